"""Are the inversions converged enough for the study's verdicts? Two finished runs of one profile that differ
only in inversion steps (e.g. the default and 4x), side by side: per-space loss at the last step and how
much it still fell over the last 10 % of steps, Table 1, the ranking of the spaces by MSE, and the
verdicts (non-inferiority tests, mean identity of the configured pair).

    snakemake --cores 2                                                        # results/mini
    snakemake --cores 2 --config run_name=mini-steps256 'inversion={steps: 256}'   # results/mini-steps256
    python -m benchmarks.studies.step_convergence results/mini results/mini-steps256 \\
        [--out results/mini/tables/steps.md]

The default is well chosen when the ranking and the verdicts agree between the two runs.
"""

from __future__ import annotations

import argparse
import pathlib

import pandas as pd
from scipy.stats import kendalltau

import spaces
from benchmarks.report.tables import collect_csvs, order_spaces, to_markdown, write_text


def run_summary(results_dir: str | pathlib.Path) -> dict:
    """Per-space losses, Table 1 and verdicts of one finished run."""
    res = pathlib.Path(results_dir)
    names = {spaces.get(name).slug: name for name in spaces.names()}
    losses = collect_csvs(res, "inversion/*/losses.csv")
    losses["space"] = losses.space_slug.map(names)
    steps = int(losses.step.max()) + 1
    tail = max(1, steps // 10)
    per_space = []
    for space, group in losses.groupby("space"):
        by_step = group.groupby("step")[["total", "mse"]].mean()
        per_space.append(
            dict(
                space=space,
                steps=steps,
                loss_first=by_step.total.iloc[0],
                loss_last=by_step.total.iloc[-1],
                loss_fall_last_10pct=1 - by_step.total.iloc[-1] / by_step.total.iloc[-1 - tail],
                mse_last=by_step.mse.iloc[-1],
            )
        )
    table1 = pd.read_csv(res / "tables" / "table1.csv")
    noninferiority = pd.read_csv(res / "tables" / "noninferiority.csv")
    identity_path = res / "tables" / "identity.csv"  # absent when a run stopped after the inversions
    identity = (
        pd.read_csv(identity_path)
        if identity_path.exists()
        else pd.DataFrame(columns=["space", "family", "mean_similarity"])
    )
    return dict(
        steps=steps,
        losses=pd.DataFrame(per_space),
        table1=table1,
        noninferiority=noninferiority,
        identity=identity[identity.family == "all"],
    )


def compare_runs(default_dir, longer_dir) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(per-space table, verdict table, agreement facts) of two runs."""
    a, b = run_summary(default_dir), run_summary(longer_dir)
    na, nb = a["steps"], b["steps"]
    common = order_spaces(set(a["table1"].space) & set(b["table1"].space))  # a partial longer run: the spaces both have
    per_space = []
    for space in common:
        row = dict(space=space)
        for run, steps in ((a, na), (b, nb)):
            t1 = run["table1"].set_index("space").loc[space]
            ls = run["losses"].set_index("space").loc[space] if space in set(run["losses"].space) else None
            ident = run["identity"].set_index("space")["mean_similarity"].get(space)
            row |= {
                f"mse@{steps}": t1.mse_mean,
                f"ssim@{steps}": t1.ssim_mean,
                f"perceptual@{steps}": t1.perceptual_mean,
                f"loss@{steps}": None if ls is None else ls.loss_last,
                f"loss_fall_last10%@{steps}": None if ls is None else ls.loss_fall_last_10pct,
                f"identity@{steps}": ident,
            }
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
    verdicts = pd.DataFrame(verdicts)
    tau = kendalltau(rank_a, rank_b).statistic
    facts = dict(
        steps=(na, nb),
        kendall_tau_mse_rank=float(tau),
        same_mse_ranking=bool((rank_a == rank_b).all()),
        same_verdicts=bool((verdicts[f"holds@{na}"] == verdicts[f"holds@{nb}"]).all()),
    )
    return per_space, verdicts, facts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("default_dir")
    parser.add_argument("longer_dir")
    parser.add_argument("--out", help="also write the tables as markdown here")
    args = parser.parse_args(argv)
    per_space, verdicts, facts = compare_runs(args.default_dir, args.longer_dir)
    text = (
        f"## Inversion steps {facts['steps'][0]} vs {facts['steps'][1]}\n\n"
        + to_markdown(per_space, float_format="{:.4f}")
        + "\n\n"
        + to_markdown(verdicts, float_format="{:.3g}")
        + f"\n\nKendall tau of the MSE rankings: {facts['kendall_tau_mse_rank']:.3f}; "
        f"same ranking: {facts['same_mse_ranking']}; "
        f"same verdicts: {facts['same_verdicts']}\n"
    )
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
