"""Recompute a run's statistical tables and per-image scores from its per-image rows, along a path that never calls
the code that wrote them (benchmarks.statistics, benchmarks.report.tables): scipy's tests and bootstrap, numpy,
pandas, and scikit-image's SSIM on the saved PNGs, so that a reviewer can tell whether each cell follows from its rows.

Recomputed: every cell of table1, noninferiority, identity, edit_fidelity, realism and editing_verdicts (with the
informative flags and equivalence margins behind the verdict words, from editing/ and edits/), and the MSE and SSIM
of every inversion/**/metrics.csv row from recon/<id>.png and targets/images/<id>.png. Not recomputed: the perceptual
column (it needs the run's own VGG trunk and weights, no independent path; its table1 mean and sd are checked), the
prose columns h0/h1, the Hodges-Lehmann bound of a "wilcoxon" test (its statistic and p are checked), and the
identity at a matched attribute change (identity_matched*), whose per-image values come from
tables/editing_per_image.csv instead of a re-interpolation of the attribute sweeps.

Where each part lives: benchmarks.audit.cells, the cell machinery every table shares and the exact, FLOAT and PIXEL
tolerances; benchmarks.audit.verdicts, editing_verdicts with its Monte-Carlo tolerances and the rule behind its
verdict words; this module, the rest (table1, noninferiority, identity, edit_fidelity, realism, the per-image MSE
and SSIM) and the public API: recompute_tables, recompute_per_image_rows, summarize.
Missing inputs, rows on one side only and repeated rows are failing Checks, never exceptions.
"""

from __future__ import annotations

import itertools
import math
import pathlib

import numpy as np
import pandas as pd
from PIL import Image
from scipy import stats
from skimage.metrics import structural_similarity

import spaces
from benchmarks.audit.cells import PIXEL, RESAMPLES, around, compare, fail, mean, read, run_config, sd, words
from benchmarks.audit.checks import Check
from benchmarks.audit.verdicts import kid, verdicts

LOWER_IS_BETTER = {"mse": True, "perceptual": True, "ssim": False}
IDENTITY_SETS = {"identity": "identity.csv", "identity_in_domain": "identity_in_domain.csv"}
FIDELITY = ("perceptual", "mse", "true_edit_perceptual", "true_edit_mse")
# the SSIM protocol of benchmarks.metrics.reconstruction's docs: Gaussian window, sigma 1.5, population covariances,
# uint8 range, each channel scored, the mean of the whole map (borders included)
SSIM = dict(channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, full=True)


def _metrics_files(cfg: dict) -> dict[str, str]:
    """table1 row -> its metrics.csv, as the pipeline lays them out (budget-matched pivot rows included)."""
    files = {}
    for space in map(spaces.get, cfg["inversion"]["spaces"]):
        files[space.name] = f"inversion/{space.slug}/metrics.csv"
        if cfg["inversion"].get("budget_matched_pivots", False) and space.pivot is not None:
            files[spaces.budget_matched_name(space)] = f"inversion/budget_matched/{space.slug}/metrics.csv"
    return files


def recompute_tables(
    results_dir, *, config: dict | None = None, resamples: int = RESAMPLES, seed: int = 20240601
) -> list[Check]:
    """One Check per cell of the six audited tables (module docstring). config: the run's (default: provenance.json's);
    resamples, seed: the audit's own bootstrap and permutation draws, deliberately unlike the suite's."""
    results, checks = pathlib.Path(results_dir), []
    cfg = run_config(results, config)
    if cfg is None:
        return [fail("provenance.json", "config", "the run's config")]
    metrics = {name: read(results, path, checks) for name, path in _metrics_files(cfg).items()}
    checks += compare(results, "table1", ["space"], _table1(metrics))
    checks += _noninferiority(results, cfg["statistics"], metrics)
    edits = {name: f"edits/{spaces.get(name).slug}" for name in cfg["inversion"]["spaces"]}
    read_edits = lambda file: {name: read(results, f"{folder}/{file}", checks) for name, folder in edits.items()}  # noqa: E731
    sets, fidelity = {metric: read_edits(file) for metric, file in IDENTITY_SETS.items()}, read_edits("fidelity.csv")
    checks += compare(results, "identity", ["space", "family"], _identity(sets["identity"]))
    cells = {
        (n, float(a)): {c: mean(g[c]) for c in FIDELITY}
        for n, f in fidelity.items()
        for a, g in ([] if f is None else f.groupby("alpha"))
    }
    checks += compare(results, "edit_fidelity", ["space", "alpha"], cells)
    realism = {name: read(results, f"{folder}/realism.npz", checks) for name, folder in edits.items()}
    reference = read(results, "editing/realism_reference.npz", checks)
    realism = {name: r for name, r in realism.items() if r is not None and reference is not None}
    cells = {}
    for space, r in realism.items():
        for size in np.unique(np.abs(r["alpha"])):
            chosen = np.abs(r["alpha"]) == size
            cells[(space, float(size))] = dict(
                n=int(chosen.sum()), kid=kid(r["features"][chosen], reference["features"])
            )
    checks += compare(results, "realism", ["space", "abs_alpha"], cells)
    kids = {space: cells[(space, 0.0)]["kid"] for space in realism if (space, 0.0) in cells}
    rng = np.random.default_rng(seed)
    return checks + verdicts(results, cfg, sets, fidelity, realism, reference, kids, checks, resamples, rng)


def _table1(metrics: dict) -> dict:
    cells = {}
    for name, frame in ((n, f) for n, f in metrics.items() if f is not None):
        row = dict(n=len(frame))
        for metric in ("mse", "ssim", "perceptual"):
            values = frame[metric].to_numpy(np.float64)  # all NaN (not computed) stays NaN
            row |= {f"{metric}_mean": np.mean(values), f"{metric}_sd": sd(values)}
        steps = frame["image_steps"].to_numpy(np.float64) if "image_steps" in frame else np.array([math.nan])
        cells[(name,)] = row | dict(steps_mean=np.mean(steps), steps_max=np.max(steps))
    return cells


def _noninferiority(results: pathlib.Path, s: dict, metrics: dict) -> list[Check]:
    """scipy.stats.ttest_rel (or wilcoxon) of candidate against reference, shifted by the margin, one-sided."""
    cells, checks, alpha, margin = {}, [], 1 - s["confidence"], s["margin"]
    for (candidate, reference), metric in itertools.product(s["pairs"], s["metrics"]):
        a, b, label = metrics.get(candidate), metrics.get(reference), f"row {candidate} / {reference} / {metric}"
        if a is None or b is None or metric not in LOWER_IS_BETTER:
            checks.append(fail("tables/noninferiority.csv", label, "per-image rows and a known direction"))
            continue
        paired, lower = a.merge(b, on="image_id", suffixes=("_c", "_r")), LOWER_IS_BETTER[metric]
        if not len(paired) == len(a) == len(b):
            checks.append(fail("tables/noninferiority.csv", label, "the same images", f"{len(a)} and {len(b)}"))
        c, r = paired[f"{metric}_c"].to_numpy(np.float64), paired[f"{metric}_r"].to_numpy(np.float64)
        keep, side = np.isfinite(c) & np.isfinite(r), "less" if lower else "greater"
        c, r = c[keep], r[keep]
        row = dict(test=s["test"], better=side.replace("less", "lower").replace("greater", "higher"))
        row |= dict(margin=float(margin), confidence=float(s["confidence"]), n=len(c), n_missing=int((~keep).sum()))
        row |= dict(mean_candidate=np.mean(c), mean_reference=np.mean(r), mean_difference=np.mean(c - r))
        if s["test"] == "paired-t":  # H1: the candidate is worse by less than the margin, or better
            test = stats.ttest_rel(c - margin if lower else c + margin, r, alternative=side)
            interval = stats.ttest_rel(c, r, alternative=side).confidence_interval(s["confidence"])
            row |= dict(statistic=-test.statistic if lower else test.statistic)
            row |= dict(confidence_bound=interval.high if lower else interval.low)
        else:
            test = stats.wilcoxon(r + margin if lower else c + margin, c if lower else r, alternative="greater")
            row |= dict(statistic=float(test.statistic))
        row |= dict(bound_side="upper" if lower else "lower", p_value=float(test.pvalue))
        row["non_inferior"] = words({x < alpha for x in around(test.pvalue)}, "p_value vs 1 - confidence")
        cells[(candidate, reference, metric)] = row
    return checks + compare(results, "noninferiority", ["candidate", "reference", "metric"], cells)


def _identity(identity: dict) -> dict:
    cells = {}
    for name, frame in ((n, f) for n, f in identity.items() if f is not None):
        for family, group in [*frame.groupby("family"), ("all", frame)]:
            similarity = group.similarity.to_numpy(np.float64)
            row = dict(n=len(group), n_images=group.image_id.nunique(), mean_similarity=mean(similarity))
            row |= dict(sd_similarity=sd(similarity), n_missing=int(np.isnan(similarity).sum()))
            row["targets_undetected"] = group.image_id[~group.target_detected.astype(bool)].nunique()
            cells[(name, family)] = row | dict(edited_undetected=int((~group.edited_detected.astype(bool)).sum()))
    return cells


def recompute_per_image_rows(results_dir, *, config: dict | None = None, tolerance: float = PIXEL) -> list[Check]:
    """MSE (mean squared difference on the [-1, 1] scale) and SSIM (scikit-image: Gaussian window, sigma 1.5, population
    covariances, data_range 255, the mean of each channel's whole map, borders included: the protocol in the docs of
    benchmarks.metrics.reconstruction) of every metrics.csv row, from recon/<id>.png and targets/images/<id>.png; each
    target of targets/targets.csv needs one row. The perceptual column is not recomputed (module docstring)."""
    results, checks = pathlib.Path(results_dir), []
    cfg, targets = run_config(results, config), read(results, "targets/targets.csv", checks)
    if cfg is None or targets is None:
        return checks + ([fail("provenance.json", "config", "the run's config")] if cfg is None else [])
    wanted = set(targets.image_id)
    for relative in _metrics_files(cfg).values():
        frame = read(results, relative, checks)
        rows = {} if frame is None else dict(list(frame.groupby("image_id")))
        for image_id in sorted(wanted | set(rows)) if frame is not None else ():
            row = rows.get(image_id)
            if row is None or len(row) != 1 or image_id not in wanted:
                why = "one row (a target of targets/targets.csv)" if image_id in wanted else "no row (not a target)"
                checks.append(fail(relative, f"row {image_id}", why, f"{0 if row is None else len(row)} rows"))
                continue
            paths = [(results / relative).parent / f"recon/{image_id}.png", results / f"targets/images/{image_id}.png"]
            checks += [fail(str(p.relative_to(results)), "", "the image") for p in paths if not p.is_file()]
            if not all(p.is_file() for p in paths):
                continue
            recon, target = (np.asarray(Image.open(p).convert("RGB")) for p in paths)
            ssim = structural_similarity(recon, target, **SSIM)[1].mean(dtype=np.float64)
            for metric, value in (("mse", np.mean((recon / 127.5 - target / 127.5) ** 2)), ("ssim", ssim)):
                found, value, item = float(row[metric].iloc[0]), float(value), f"row {image_id} | {metric}"
                ok, shown = abs(found - value) <= tolerance, (repr(value), repr(found))
                checks.append(
                    Check("cell", relative, item, *shown, bool(ok), abs(found - value), f"{tolerance:g} absolute")
                )
    return checks


def summarize(checks: list[Check]) -> pd.DataFrame:
    """Per subject (a table, a per-image file): cells checked, how many failed, and the worst difference among the
    deterministic cells and among the Monte-Carlo ones (those against the audit's own draws)."""
    rows = [(c.subject, c.ok, c.difference, c.tolerance.startswith("Monte-Carlo")) for c in checks]
    frame = pd.DataFrame(rows, columns=["subject", "ok", "difference", "monte_carlo"])
    frame = frame.assign(failed=~frame.ok.astype(bool), difference=frame.difference.astype(float))
    frame = frame.assign(
        exact=frame.difference.where(~frame.monte_carlo), drawn=frame.difference.where(frame.monte_carlo)
    )
    worst = dict(worst_difference=("exact", "max"), worst_monte_carlo_difference=("drawn", "max"))
    return (
        frame.groupby("subject", sort=False).agg(cells=("ok", "size"), failed=("failed", "sum"), **worst).reset_index()
    )
