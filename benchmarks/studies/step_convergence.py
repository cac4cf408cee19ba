"""Are the inversions converged enough for the study's verdicts? Two finished runs of one profile that differ
only in the step cap of every stage (the default and 4x), side by side: per row its final loss at both caps
(and whether the default's is within 5 % of the 4x one), the steps its images took, Table 1, the ranking of the
spaces by MSE, and the verdicts (non-inferiority tests, mean identity of the configured pair, the editing verdicts).

    snakemake --cores 2                                                            # results/mini
    snakemake --cores 2 --config run_name=mini-cap4x \\
        'inversion={steps: 512, tuning: {steps: 256}, sam: {steps: 256}}'             # results/mini-cap4x
    python -m benchmarks.studies.step_convergence results/mini results/mini-cap4x \\
        [--out results/mini/tables/steps.md]

The default is well chosen when every row is within 5 % and the ranking and the verdicts agree between the runs.

A 4x run of every image costs 4x the inversions (the mini run's are most of its time). Since each image descends as
it would alone (fzplus.optimiser; tests/test_optimiser.py), a few of the default run's own targets inverted at 4x
give those images' exact 4x results; `--rerun K` does that (every configured space, pivots first, through the
pipeline's own invert stage; budget-matched rows left out) and compares the losses on the images both runs have:

    python -m benchmarks.studies.step_convergence results/mini results/mini-cap4x-subset --rerun 3

Table 1 and the verdicts are compared only when both runs hold the same images. The editing verdicts measured on the
in-domain targets alone (fidelity, in-domain identity; benchmarks.statistics.editing.IN_DOMAIN_METRICS) need only
the same in-domain targets, and only the compared pairs' edits (pair_editing_verdicts computes them from those), so
a 4x run that inverts every space on a few real targets, and only the pairs' six spaces on the in-domain targets,
decides whether those verdicts hold at 4x without the other eleven spaces' in-domain inversions and edits. The real
targets are the default run's first few (a seeded sample of 4 is not a subset of the sample of 16):

    mkdir -p resources/targets4  # and copy in the source files of results/mini/targets/targets.csv's first 4
    R=results/mini-cap4x; SLUGS="z z_plus w w_plus w_plus_pn s f_z f_z_plus f_w f_w_plus f_w_plus_pn f_s idinvert"
    snakemake --cores 2 --config run_name=mini-cap4x 'targets={asset: null, folder: resources/targets4, count: null}' \\
        'editing={images: 4}' \\
        'inversion={steps: 512, budget_matched_pivots: false, tuning: {steps: 256}, sam: {steps: 256}}' -- \\
        $R/edits/{f_z_plus,f_w_plus_pn,pti_z_plus,pti,sam_z_plus,sam}/fidelity.csv \\
        $(for s in $SLUGS; do echo $R/inversion/$s/metrics.csv; done)
    python -m benchmarks.studies.step_convergence results/mini results/mini-cap4x

A row is within 5 % when its mean final loss at the cap is at most 1.05 times the one at 4x on every target set both
runs inverted (real and in-domain).
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Mapping

import pandas as pd
from scipy.stats import kendalltau

import spaces
from benchmarks.report.tables import collect_csvs, order_spaces, to_markdown, write_text
from benchmarks.statistics.editing import IN_DOMAIN_METRICS


def loss_summary(losses: pd.DataFrame, *, best_from: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Per space (named): steps, the first mean loss, the final one (each image's at its last step, or, for a space in
    `best_from`, its lowest from that step on: the run kept each image's best iterate of the stage starting there), the
    fall over the last 10 % of steps, and the final MSE."""
    best_from = best_from or {}
    per_space = []
    for space, group in losses.groupby("space"):
        by_step = group.groupby("step")[["total", "mse"]].mean()
        tail = max(1, len(by_step) // 10)
        if space in best_from:
            stage = group[group.step >= best_from[space]]
            final = stage.loc[stage.groupby("image_id").total.idxmin()]
        else:
            final = group.loc[group.groupby("image_id").step.idxmax()]
        per_space.append(
            dict(
                space=space,
                steps=len(by_step),
                loss_first=by_step.total.iloc[0],
                loss_last=final.total.mean(),
                loss_fall_last_10pct=1 - by_step.total.iloc[-1] / by_step.total.iloc[-1 - tail],
                mse_last=final.mse.mean(),
            )
        )
    return pd.DataFrame(
        per_space, columns=["space", "steps", "loss_first", "loss_last", "loss_fall_last_10pct", "mse_last"]
    )


def kept_best_from(results_dir) -> dict[str, int]:
    """Space -> the first step of the stage whose best iterate each image kept (keep_best of the run's recorded
    config; a method's own stage starts after its pivot's cap in the traces). Spaces that kept their last iterate are
    left out."""
    recorded = pathlib.Path(results_dir) / "provenance.json"
    if not recorded.exists():
        return {}
    inv = json.loads(recorded.read_text())["config"]["inversion"]
    found = {}
    for name in spaces.names():
        space = spaces.get(name)
        if space.has_second_stage and space.settings_key:
            if inv.get(space.settings_key, {}).get("keep_best"):
                found[name] = inv["steps"]
        elif inv.get("keep_best"):
            found[name] = 0
    return found


def target_losses(results_dir, target_set: str, image_ids: set[str] | None = None) -> pd.DataFrame:
    """Every space's per-step losses on one target set ("real": inversion/, "in_domain": ground_truth/inversion/)."""
    res = pathlib.Path(results_dir)
    names = {spaces.get(name).slug: name for name in spaces.names()}
    folder = {"real": "inversion", "in_domain": "ground_truth/inversion"}[target_set]
    if not any(res.glob(f"{folder}/*/losses.csv")):
        return pd.DataFrame(columns=["space", "image_id", "step", "total", "mse"])
    losses = collect_csvs(res, f"{folder}/*/losses.csv")
    if image_ids is not None:
        losses = losses[losses.image_id.isin(image_ids)]
    return losses.assign(space=losses.space_slug.map(names))


def recorded_config(results_dir) -> dict | None:
    recorded = pathlib.Path(results_dir) / "provenance.json"  # written last: None while a run is still going
    return json.loads(recorded.read_text())["config"] if recorded.exists() else None


def pair_editing_verdicts(results_dir, cfg: Mapping) -> pd.DataFrame:
    """The editing verdicts of `cfg`'s pairs computed from those spaces' own edit folders alone (the pipeline's
    editing_tables stage on them), for a run that edited only the compared pairs and so has no editing tables.
    Verdicts at a matched attribute change are left out: their levels depend on every space of the table. Empty
    when the run lacks a pair's edits or its editing references."""
    import tempfile

    from benchmarks.pipeline.editing import editing_tables_stage

    res = pathlib.Path(results_dir)
    names = list(dict.fromkeys(name for pair in cfg["statistics"]["pairs"] for name in pair))
    edits = {name: res / "edits" / spaces.get(name).slug for name in names}
    if not names or not (res / "editing").is_dir() or not all((d / "fidelity.csv").exists() for d in edits.values()):
        return pd.DataFrame()
    with tempfile.TemporaryDirectory() as tables:
        editing_tables_stage(
            cfg, edits_dirs={n: str(d) for n, d in edits.items()}, references_dir=res / "editing", tables_dir=tables
        )
        verdicts = pd.read_csv(pathlib.Path(tables) / "editing_verdicts.csv")
    return verdicts[~verdicts.metric.str.contains("matched")].reset_index(drop=True)


def run_summary(
    results_dir: str | pathlib.Path,
    *,
    image_ids: set[str] | None = None,
    in_domain_ids: set[str] | None = None,
    cfg: Mapping | None = None,
) -> dict:
    """Per-space losses (real and in-domain targets), Table 1 and verdicts of one run; the losses of `image_ids`
    (`in_domain_ids`) only, if given. A run that stopped before its tables (the compared pairs' jobs only) gets Table
    1 from its per-image rows and the pairs' editing verdicts from their edits (pair_editing_verdicts, with the
    run's recorded config, else `cfg`)."""
    res = pathlib.Path(results_dir)
    tables = res / "tables"
    finished = (tables / "table1.csv").exists()
    table1 = pd.read_csv(tables / "table1.csv") if finished else subset_table1(res, image_ids)
    noninferiority = (
        pd.read_csv(tables / "noninferiority.csv")
        if finished
        else pd.DataFrame(columns=["candidate", "reference", "metric", "p_value", "non_inferior"])
    )
    editing_path = tables / "editing_verdicts.csv"
    config = recorded_config(res) or cfg
    if editing_path.exists():
        editing = pd.read_csv(editing_path)
    else:
        editing = pair_editing_verdicts(res, config) if config is not None else pd.DataFrame()
    identity_path = res / "tables" / "identity.csv"  # absent when a run stopped after the inversions
    identity = (
        pd.read_csv(identity_path)
        if identity_path.exists()
        else pd.DataFrame(columns=["space", "family", "mean_similarity"])
    )
    real, best_from = target_losses(res, "real", image_ids), kept_best_from(res)
    return dict(
        steps=int(real.step.max()) + 1,
        losses=loss_summary(real, best_from=best_from),
        losses_in_domain=loss_summary(target_losses(res, "in_domain", in_domain_ids), best_from=best_from),
        table1=table1,
        noninferiority=noninferiority,
        identity=identity[identity.family == "all"],
        editing=editing,
    )


def subset_table1(results_dir, image_ids: set[str] | None) -> pd.DataFrame:
    """Table 1's means (mse, ssim, perceptual, steps) over `image_ids` (None: all), from the per-image metrics.csv
    rows."""
    rows = collect_csvs(results_dir, "inversion/*/metrics.csv")
    if image_ids is not None:
        rows = rows[rows.image_id.isin(image_ids)]
    means = rows.groupby("space")[["mse", "ssim", "perceptual", "image_steps"]].mean()
    return means.rename(columns=lambda c: "steps_mean" if c == "image_steps" else f"{c}_mean").reset_index()


def rerun_subset(default_dir, out_dir, *, images: int, factor: int = 4, profile: str | None = None) -> pathlib.Path:
    """The first `images` targets of a finished run inverted into each of its spaces at `factor` x every stage's
    step cap, by the pipeline's invert stage with the run's own config (its provenance.json's; before the run has
    written it, the config of `profile`, default the folder's name), generator, encoders and P_N statistics.
    Writes out_dir/{targets,inversion/<slug>}; returns out_dir."""
    import shutil

    from benchmarks.pipeline.evaluate import invert_stage
    from fzplus.config import load_config
    from fzplus.encoders import KINDS
    from fzplus.targets import CSV_NAME, IMAGES_DIR

    src, out = pathlib.Path(default_dir), pathlib.Path(out_dir)
    cfg = recorded_config(src) or load_config(profile or src.name)
    inv = cfg["inversion"]
    inv["steps"] *= factor
    for section in ("tuning", "sam"):
        if section in inv:
            inv[section]["steps"] *= factor
    listed = pd.read_csv(src / "targets" / CSV_NAME, dtype={"image_id": str}).head(images)
    (out / "targets" / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    listed.to_csv(out / "targets" / CSV_NAME, index=False)
    for image_id in listed.image_id:
        shutil.copy(src / "targets" / IMAGES_DIR / f"{image_id}.png", out / "targets" / IMAGES_DIR)
    chosen = {spaces.get(name) for name in inv["spaces"]}
    chosen |= {s.pivot for s in chosen if s.pivot is not None}  # a method's pivot runs even when not configured
    for space in sorted(chosen, key=lambda s: (s.pivot is not None, s.name)):  # pivots first
        invert_stage(
            cfg,
            space_name=space.name,
            generator_path=src / "generator.pt",
            targets_dir=out / "targets",
            out_dir=out / "inversion" / space.slug,
            encoder_path=src / KINDS[space.encoder_kind].file if space.encoder_kind else None,
            pn_stats_path=src / "pn_stats.npz" if space.needs_pn_stats else None,
            pivot_dir=out / "inversion" / space.pivot.slug if space.pivot is not None else None,
        )
    return out


def compare_runs(default_dir, longer_dir) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(per-space table, verdict table, agreement facts) of two runs; losses on the images both inverted, and Table 1
    and the verdicts only when those are all of each run's images."""
    ids = [set(target_losses(d, "real").image_id) for d in (default_dir, longer_dir)]
    in_domain = [set(target_losses(d, "in_domain").image_id) for d in (default_dir, longer_dir)]
    common, common_in_domain = ids[0] & ids[1], in_domain[0] & in_domain[1]
    cfg = recorded_config(default_dir) or recorded_config(longer_dir)  # the runs share their profile
    a, b = (
        run_summary(d, image_ids=common, in_domain_ids=common_in_domain, cfg=cfg) for d in (default_dir, longer_dir)
    )
    if ids[0] != ids[1]:  # a subset re-run: Table 1 on those images, from the per-image rows; no real-target verdicts
        for run, d in ((a, default_dir), (b, longer_dir)):
            run["table1"] = subset_table1(d, common)
            run["noninferiority"] = run["noninferiority"].iloc[0:0]
            run["identity"] = run["identity"].iloc[0:0]
            same_in_domain = in_domain[0] == in_domain[1] and bool(in_domain[0]) and not run["editing"].empty
            # a run that re-did every in-domain target (fewer real ones to save time) still decides those verdicts
            run["editing"] = (
                run["editing"][run["editing"].metric.isin(IN_DOMAIN_METRICS)] if same_in_domain else pd.DataFrame()
            )
    na, nb = "cap", "4x" if b["steps"] == 4 * a["steps"] else f"{b['steps'] / a['steps']:g}x"
    common = order_spaces(set(a["table1"].space) & set(b["table1"].space))  # a partial longer run: the spaces both have
    per_space = []
    for space in common:
        row = dict(space=space)
        for run, steps in ((a, na), (b, nb)):
            t1 = run["table1"].set_index("space").loc[space]
            ls = run["losses"].set_index("space").loc[space] if space in set(run["losses"].space) else None
            ident = run["identity"].set_index("space")["mean_similarity"].get(space)
            row |= {
                f"steps@{steps}": t1.get("steps_mean"),
                f"mse@{steps}": t1.mse_mean,
                f"ssim@{steps}": t1.ssim_mean,
                f"perceptual@{steps}": t1.perceptual_mean,
                f"loss@{steps}": None if ls is None else ls.loss_last,
                f"loss_fall_last10%@{steps}": None if ls is None else ls.loss_fall_last_10pct,
                f"identity@{steps}": ident,
            }
        for run, steps in ((a, na), (b, nb)):
            ls = run["losses_in_domain"].set_index("space")
            row[f"loss_in_domain@{steps}"] = ls.loss_last.get(space)
        # within 5 % on every target set both runs inverted (a row is converged on real and generated targets alike)
        ratios = [
            row[f"{key}@{na}"] / row[f"{key}@{nb}"]
            for key in ("loss", "loss_in_domain")
            if row[f"{key}@{na}"] is not None and row[f"{key}@{nb}"] is not None
        ]
        row["loss_ratio_worst"] = max(ratios) if ratios else None
        row["within_5pct"] = None if not ratios else bool(max(ratios) <= 1.05)
        per_space.append(row)
    per_space = pd.DataFrame(per_space)
    rank_a = per_space[f"mse@{na}"].rank().astype(int)
    rank_b = per_space[f"mse@{nb}"].rank().astype(int)
    per_space.insert(1, f"mse_rank@{na}", rank_a)
    per_space.insert(2, f"mse_rank@{nb}", rank_b)
    verdicts = []
    keys = ["candidate", "reference", "metric"]
    merged = a["noninferiority"].merge(b["noninferiority"], on=keys, suffixes=(f"@{na}", f"@{nb}"))
    for _, r in merged.iterrows():
        verdicts.append(
            dict(
                verdict=f"{r.candidate} vs {r.reference}: {r.metric} non-inferior",
                **{
                    f"p@{na}": r[f"p_value@{na}"],
                    f"p@{nb}": r[f"p_value@{nb}"],
                    f"holds@{na}": bool(r[f"non_inferior@{na}"]),
                    f"holds@{nb}": bool(r[f"non_inferior@{nb}"]),
                },
            )
        )
    ia, ib = (run["identity"].set_index("space")["mean_similarity"] for run in (a, b))
    for cand, ref in merged[["candidate", "reference"]].drop_duplicates().itertuples(index=False):
        if cand in ia and ref in ia and cand in ib and ref in ib:
            verdicts.append(
                dict(
                    verdict=f"{cand} vs {ref}: higher mean identity",
                    **{
                        f"p@{na}": None,
                        f"p@{nb}": None,
                        f"holds@{na}": bool(ia[cand] > ia[ref]),
                        f"holds@{nb}": bool(ib[cand] > ib[ref]),
                    },
                )
            )
    if not a["editing"].empty and not b["editing"].empty:
        keys = [k for k in ("candidate", "reference", "metric") if k in a["editing"]]
        both = a["editing"].merge(b["editing"], on=keys, suffixes=(f"@{na}", f"@{nb}"))
        for _, r in both.iterrows():
            verdicts.append(
                {
                    "verdict": f"{r.candidate} vs {r.reference}: {r.metric} editing verdict",
                    f"p@{na}": r.get(f"p_value@{na}"),
                    f"p@{nb}": r.get(f"p_value@{nb}"),
                    f"holds@{na}": r[f"verdict@{na}"],
                    f"holds@{nb}": r[f"verdict@{nb}"],
                }
            )
    verdicts = pd.DataFrame(verdicts)
    tau = kendalltau(rank_a, rank_b).statistic
    facts = dict(
        steps=(na, nb),
        kendall_tau_mse_rank=float(tau),
        same_mse_ranking=bool((rank_a == rank_b).all()),
        same_verdicts=None if verdicts.empty else bool((verdicts[f"holds@{na}"] == verdicts[f"holds@{nb}"]).all()),
        all_within_5pct=bool(per_space["within_5pct"].fillna(False).all()),
    )
    return per_space, verdicts, facts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("default_dir")
    parser.add_argument("longer_dir")
    parser.add_argument("--out", help="also write the tables as markdown here")
    parser.add_argument(
        "--rerun", type=int, metavar="K", help="first invert K of default_dir's targets at 4x into longer_dir"
    )
    args = parser.parse_args(argv)
    if args.rerun:
        rerun_subset(args.default_dir, args.longer_dir, images=args.rerun)
    per_space, verdicts, facts = compare_runs(args.default_dir, args.longer_dir)
    text = (
        f"## Step caps: the default vs {facts['steps'][1]}\n\n"
        + to_markdown(per_space, float_format="{:.4f}")
        + "\n\n"
        + (to_markdown(verdicts, float_format="{:.3g}") if not verdicts.empty else "Verdicts: not compared (a subset).")
        + f"\n\nKendall tau of the MSE rankings: {facts['kendall_tau_mse_rank']:.3f}; "
        f"same ranking: {facts['same_mse_ranking']}; "
        f"same verdicts: {facts['same_verdicts']}; every row within 5 %: {facts['all_within_5pct']}\n"
    )
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
