"""Editing metrics from the edit sweeps: per-image values, identity at matched edit strength, realism, their
floors and ceilings, and the paired verdicts (the paper's Fig. 6 claim, made testable).

Metrics (name -> which way is better):
  identity             face-embedding cosine to the target, mean over every edit with alpha != 0. An edit in
                       which no face is detected scores the metric's floor (the median similarity between two
                       different targets): a face the detector cannot find is a broken edit, and embedding the
                       whole frame instead scored such edits like intact ones (0.876 vs 0.864 in mini).
  identity_matched     identity at a matched attribute change: every attribute edit (InterFaceGAN smile,
                       mouth_open, yaw) walks alpha away from 0 until its achieved landmark change reaches the
                       same level in every space; the identity there is interpolated. An edit that never gets
                       there scores the floor, so a space whose edits change nothing cannot win on identity.
  identity_in_domain,  the same two on the in-domain targets (generated samples, editing.ground_truth), whose
  identity_matched_in_domain  identity the generator can reproduce: on real photos the mini generator barely
                       keeps a person's identity, so there the metric sits at its floor for every space.
  fidelity_perceptual  ground-truth edit fidelity (fzplus.edits.ground_truth): perceptual distance between the
  fidelity_mse         edited inversion and the same edit of the true codes, mean over alpha != 0.
  realism_kid          KID of edited images (alpha != 0) against fresh generator samples (benchmarks.metrics.realism);
                       a set statistic, compared by a paired bootstrap over images.
A metric is used for a verdict only where benchmarks.metrics.sanity finds the reconstructions (alpha = 0) clearly
above its floor for both spaces of the pair.

The smallest difference that matters (`equivalence_margins`): a stated fraction (config statistics.equivalence,
default 0.05) of the metric's floor-to-ceiling gap, |ceiling - best floor| as the informative flags measure them
(medians over the edited targets, or the KID of the sanity sets), the smaller of the pair's two spaces' gaps.
A verdict says "better"/"worse" only for a mean difference at least that large, and "equivalent" when the whole
interval lies within it (benchmarks.statistics.paired). The matched identity metrics use the gap of the identity
metric they are made of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from benchmarks.metrics.realism import kid
from benchmarks.metrics.sanity import informative_check, set_metric_informative
from fzplus.edits.attributes import ATTRIBUTES

METRICS = {
    "identity": "higher",
    "identity_matched": "higher",
    "identity_in_domain": "higher",
    "identity_matched_in_domain": "higher",
    "fidelity_perceptual": "lower",
    "fidelity_mse": "lower",
    "realism_kid": "lower",
}
# measured on the in-domain targets alone (generated samples, editing.ground_truth): two runs with the same in-domain
# targets can compare these verdicts whatever their real targets
IN_DOMAIN_METRICS = ("identity_in_domain", "identity_matched_in_domain", "fidelity_perceptual", "fidelity_mse")
# the identity metric of each target set -> its value at a matched attribute change
MATCHED_METRIC = {"identity": "identity_matched", "identity_in_domain": "identity_matched_in_domain"}
# judged by the floor and ceiling of the metric it is made of
SOURCE_METRIC = {matched: metric for metric, matched in MATCHED_METRIC.items()}
# one column set for per-image metrics (medians over images) and set metrics (one value per set)
MEDIAN_AS_VALUE = {
    "best_floor_median": "best_floor_value",
    "ceiling_median": "ceiling_value",
    "recon_median": "recon_value",
}


def identity_floor(baselines: pd.DataFrame, *, metric: str = "identity") -> float:
    """An identity metric's floor: median similarity between two different targets of its target set."""
    other = baselines[(baselines.metric == metric) & (baselines.reference == "other")]["value"]
    if other.empty:
        raise ValueError(f"the baselines have no {metric} 'other' rows; run the editing_references stage")
    return float(other.median())


def scored_similarity(identity: pd.DataFrame, *, floor: float) -> pd.Series:
    """Similarity with undetected edited faces scored at the floor (module docstring)."""
    return identity["similarity"].where(identity["edited_detected"].astype(bool), floor)


def attribute_changes(identity: pd.DataFrame, *, floor: float) -> pd.DataFrame:
    """Rows of attribute edits with `change` = sign(alpha) * (score - score at alpha 0): the attribute change
    achieved in the direction's own sense (a wrong-way change is negative), NaN where no face was found."""
    rows = identity[(identity.family == "interfacegan") & identity.direction.isin(ATTRIBUTES)].copy()
    keys = ["space", "family", "direction", "image_id"]
    start = rows[rows.alpha == 0].set_index(keys)["attribute_score"]
    rows["change"] = np.sign(rows["alpha"]) * (
        rows["attribute_score"].to_numpy() - start.reindex(pd.MultiIndex.from_frame(rows[keys])).to_numpy()
    )
    rows["change"] = rows["change"].where(rows.alpha != 0, 0.0)
    rows["scored"] = scored_similarity(rows, floor=floor)
    return rows


def _paths(changes: pd.DataFrame):
    """(space, image_id, direction, sign) -> its edit path sorted by |alpha|, alpha 0 first."""
    for sign in (1.0, -1.0):
        side = changes[(np.sign(changes.alpha) == sign) | (changes.alpha == 0)].assign(size=lambda f: f.alpha.abs())
        for key, path in side.groupby(["space", "image_id", "direction"], sort=True):
            yield (*key, sign), path.sort_values("size")


def matched_levels(changes: pd.DataFrame, *, at_alpha: float = 1.0) -> dict[str, float]:
    """Per attribute direction, the matched level: median over spaces, images and signs of the change
    achieved at |alpha| = at_alpha (linear interpolation between the grid's step sizes)."""
    reached: dict[str, list[float]] = {}
    for (_, _, direction, _), path in _paths(changes):
        valid = path[path.change.notna()]
        if len(valid) >= 2 and valid["size"].max() >= at_alpha:
            reached.setdefault(direction, []).append(float(np.interp(at_alpha, valid["size"], valid["change"])))
    return {direction: float(np.median(values)) for direction, values in reached.items()}


def identity_at_levels(changes: pd.DataFrame, levels: Mapping[str, float], *, floor: float) -> pd.DataFrame:
    """Per (space, image, direction, sign): identity where the achieved change first reaches the level
    (interpolated between the two alphas around it), or the floor and reached=False if it never does."""
    rows = []
    for (space, image_id, direction, sign), path in _paths(changes):
        level = levels.get(direction)
        if level is None or not level > 0:
            continue
        change, scored = path["change"].fillna(-np.inf).to_numpy(), path["scored"].to_numpy()
        hit = np.flatnonzero(change >= level)
        if len(hit) and hit[0] > 0:
            k = hit[0]
            t = (level - max(change[k - 1], 0.0)) / (change[k] - max(change[k - 1], 0.0))
            value, reached = float(scored[k - 1] + np.clip(t, 0, 1) * (scored[k] - scored[k - 1])), True
        else:
            value, reached = floor, False
        rows.append(
            dict(
                space=space,
                image_id=image_id,
                direction=direction,
                sign=sign,
                level=level,
                reached=reached,
                similarity=value,
            )
        )
    return pd.DataFrame(rows, columns=["space", "image_id", "direction", "sign", "level", "reached", "similarity"])


def per_image_metrics(
    identity: pd.DataFrame, fidelity: pd.DataFrame, matched: pd.DataFrame, *, floor: float, metric: str = "identity"
) -> pd.DataFrame:
    """Long frame (space, image_id, metric, value): each per-image metric averaged over directions and alphas != 0.
    metric: the name of the identity sweep's metric ("identity", or "identity_in_domain" for the in-domain targets)."""
    edited = identity[identity.alpha != 0].assign(value=lambda f: scored_similarity(f, floor=floor))
    frames = [
        edited.groupby(["space", "image_id"], as_index=False)["value"].mean().assign(metric=metric),
        matched.groupby(["space", "image_id"], as_index=False)["similarity"]
        .mean()
        .rename(columns={"similarity": "value"})
        .assign(metric=MATCHED_METRIC[metric]),
    ]
    moved = fidelity[fidelity.alpha != 0]
    for column in ("perceptual", "mse"):
        if not moved.empty:
            frames.append(
                moved.groupby(["space", "image_id"], as_index=False)[column]
                .mean()
                .rename(columns={column: "value"})
                .assign(metric=f"fidelity_{column}")
            )
    return pd.concat(frames, ignore_index=True)[["space", "image_id", "metric", "value"]]


def kid_by_alpha(realism: Mapping[str, Mapping[str, np.ndarray]], reference: np.ndarray) -> pd.DataFrame:
    """KID per space and |alpha| against the reference samples' features."""
    rows = []
    for space, r in realism.items():
        size = np.abs(r["alpha"])
        for value in np.unique(size):
            rows.append(
                dict(
                    space=space,
                    abs_alpha=float(value),
                    n=int((size == value).sum()),
                    kid=kid(r["features"][size == value], reference),
                )
            )
    return pd.DataFrame(rows, columns=["space", "abs_alpha", "n", "kid"])


def kid_difference(
    candidate: Mapping[str, np.ndarray],
    reference_space: Mapping[str, np.ndarray],
    reference: np.ndarray,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """KID(reference space) - KID(candidate) over edits with alpha != 0 (> 0: the candidate's edits are more
    realistic), with a paired bootstrap over image ids (benchmarks.statistics.paired.bootstrap_set_difference).
    Kernel matrices are computed once; a resample picks rows. Duplicated rows enter the within-set sums as
    distinct pairs, which biases resampled KIDs up a little for both spaces alike."""
    from benchmarks.metrics.realism import kid_from_kernels, polynomial_kernel
    from benchmarks.statistics.paired import bootstrap_set_difference

    def blocks(r):
        keep = r["alpha"] != 0
        x, ids = r["features"][keep], r["image_id"][keep]
        return polynomial_kernel(x, x), polynomial_kernel(x, reference), ids

    kyy = polynomial_kernel(reference, reference)
    a, b = blocks(candidate), blocks(reference_space)
    images = sorted(set(a[2]) & set(b[2]))
    rows_of = [{i: np.flatnonzero(ids == i) for i in images} for ids in (a[2], b[2])]

    def resampled_kid(block, rows_by_image, picks) -> float:
        rows = np.concatenate([rows_by_image[images[k]] for k in picks])
        kxx, kxy, _ = block
        return kid_from_kernels(kxx[np.ix_(rows, rows)], kyy, kxy[rows])

    statistic = lambda picks: resampled_kid(b, rows_of[1], picks) - resampled_kid(a, rows_of[0], picks)  # noqa: E731
    return bootstrap_set_difference(statistic, len(images), samples=samples, confidence=confidence, seed=seed)


def informative_flags(
    baselines: pd.DataFrame,
    identity: pd.DataFrame,
    fidelity: pd.DataFrame,
    kids: pd.DataFrame,
    realism_baselines: pd.DataFrame,
    *,
    floor: float,
    min_separation: float = 0.25,
    identity_metric: str = "identity",
) -> pd.DataFrame:
    """Per metric and space: can the metric tell this space's reconstructions (alpha = 0) from its floor?
    identity_metric: the name of the identity sweep's metric (its reference rows in the baselines)."""
    rows = []
    unedited = (
        identity[identity.alpha == 0]
        .drop_duplicates(["space", "image_id"])
        .assign(value=lambda f: scored_similarity(f, floor=floor))
    )
    per_image = {identity_metric: unedited}
    moved = fidelity[fidelity.alpha == 0].drop_duplicates(["space", "image_id"])
    for column in ("perceptual", "mse"):
        per_image[f"fidelity_{column}"] = moved.assign(value=moved[column])
    for metric, frame in per_image.items():
        refs = baselines[baselines.metric == metric]
        if metric == identity_metric:  # the same undetected-face rule as the edits
            refs = refs.assign(value=refs["value"].fillna(floor))
        for space, recon in frame.groupby("space"):
            mine = refs[refs.image_id.isin(recon.image_id)]  # the edited targets, of all the targets referenced
            check = informative_check(
                recon.set_index("image_id")["value"], mine, better=METRICS[metric], min_separation=min_separation
            )
            rows.append(dict(metric=metric, space=space, **{MEDIAN_AS_VALUE.get(k, k): v for k, v in check.items()}))
    floors = realism_baselines[realism_baselines.kind == "floor"].set_index("reference")["kid"].to_dict()
    ceilings = realism_baselines[realism_baselines.kind == "ceiling"].set_index("reference")["kid"].to_dict()
    for space, k in kids[kids.abs_alpha == 0].set_index("space")["kid"].items():
        check = set_metric_informative(float(k), floors, ceilings, better="lower", min_separation=min_separation)
        rows.append(dict(metric="realism_kid", space=space, **check))
    flags = pd.DataFrame(rows)
    derived = [flags[flags.metric == source].assign(metric=metric) for metric, source in SOURCE_METRIC.items()]
    return pd.concat([flags, *derived], ignore_index=True)


def equivalence_margins(
    flags: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    *,
    fraction: float = 0.05,
    metric_fractions: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per pair and metric of METRICS, the smallest difference that matters (module docstring): columns candidate,
    reference, metric, margin_fraction (metric_fractions' value for the metric, else fraction), floor_ceiling_gap
    (the smaller of the two spaces' |ceiling_value - best_floor_value| in the flags, NaN where either is unknown)
    and margin = margin_fraction * floor_ceiling_gap. Where the gap is unknown the margin is 0: no smallest effect,
    the interval-and-p rule alone (in a full run such a metric is uninformative, as informative needs a gap)."""
    metric_fractions = dict(metric_fractions or {})
    unknown = sorted(set(metric_fractions) - set(METRICS))
    if unknown:
        raise ValueError(f"equivalence margin fractions for unknown metrics {unknown}; known: {sorted(METRICS)}")
    for metric, value in {"fraction": fraction, **metric_fractions}.items():
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"equivalence margin fraction {metric!r} must be a finite number >= 0, got {value!r}")
    has_gap = {"ceiling_value", "best_floor_value"} <= set(flags.columns)
    gap_of = (
        {(r.metric, r.space): abs(r.ceiling_value - r.best_floor_value) for r in flags.itertuples()} if has_gap else {}
    )
    rows = []
    for candidate, reference in pairs:
        for metric in METRICS:
            gaps = [gap_of.get((metric, space), np.nan) for space in (candidate, reference)]
            gap = min(gaps) if np.isfinite(gaps).all() else np.nan  # min() alone: NaN or not by argument order
            share = float(metric_fractions.get(metric, fraction))
            rows.append(
                dict(
                    candidate=candidate,
                    reference=reference,
                    metric=metric,
                    margin_fraction=share,
                    floor_ceiling_gap=gap,
                    margin=share * gap if np.isfinite(gap) else 0.0,
                )
            )
    return pd.DataFrame(
        rows, columns=["candidate", "reference", "metric", "margin_fraction", "floor_ceiling_gap", "margin"]
    )


def verdict_table(
    per_image: pd.DataFrame,
    realism: Mapping[str, Mapping[str, np.ndarray]],
    reference: np.ndarray,
    flags: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    margin_fraction: float = 0.05,
    metric_margin_fractions: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per pair and metric: means, the bootstrap interval of the improvement, p, the margin (`equivalence_margins`)
    and better / worse / equivalent / not resolved / uninformative, with images_needed beside a "not resolved"
    (benchmarks.statistics.paired). realism_kid, a set statistic, has no per-image differences: its equivalence is
    read off the interval alone, and its per-image spread is the bootstrap standard error times sqrt(n), the
    standard error read off the percentile interval as a normal one's, (ci_high - ci_low) / (2 z_{(1+c)/2})."""
    from benchmarks.statistics.paired import comparison_table, images_needed, verdict

    ok = {(r.metric, r.space): bool(r.informative) for r in flags.itertuples()}
    both = lambda a, b, m: ok.get((m, a), False) and ok.get((m, b), False)  # noqa: E731
    informative = {(a, b, m): both(a, b, m) for a, b in pairs for m in METRICS}
    margins = equivalence_margins(flags, pairs, fraction=margin_fraction, metric_fractions=metric_margin_fractions)
    margin_of = {(r.candidate, r.reference, r.metric): r.margin for r in margins.itertuples()}
    per_image_metrics_present = {m: METRICS[m] for m in METRICS if m in set(per_image.metric)}
    table = comparison_table(
        per_image,
        pairs,
        per_image_metrics_present,
        samples=samples,
        confidence=confidence,
        seed=seed,
        informative=informative,
        margins=margin_of,
    )
    rows = []
    for a, b in pairs:
        if a in realism and b in realism:
            estimate, low, high, p = kid_difference(
                realism[a], realism[b], reference, samples=samples, confidence=confidence, seed=seed
            )
            mean_a, mean_b = (kid(r["features"][r["alpha"] != 0], reference) for r in (realism[a], realism[b]))
            n, margin = len(set(realism[a]["image_id"])), margin_of[(a, b, "realism_kid")]
            spread = (high - low) / (2 * norm.ppf((1 + confidence) / 2)) * np.sqrt(n)
            word = verdict(
                low,
                high,
                p_value=p,
                alpha=1 - confidence,
                informative=informative[(a, b, "realism_kid")],
                mean_improvement=estimate,
                margin=margin,
            )
            rows.append(
                dict(
                    candidate=a,
                    reference=b,
                    metric="realism_kid",
                    better="lower",
                    n=n,
                    n_missing=0,
                    mean_candidate=mean_a,
                    mean_reference=mean_b,
                    mean_improvement=estimate,
                    ci_low=low,
                    ci_high=high,
                    p_value=p,
                    verdict=word,
                    margin=margin,
                    equivalence_p_value=np.nan,
                    sd_improvement=spread,
                    images_needed=(
                        images_needed(estimate, spread, margin=margin, images=n, alpha=1 - confidence)
                        if word == "not resolved"
                        else np.nan
                    ),
                )
            )
    audit = margins[["candidate", "reference", "metric", "margin_fraction", "floor_ceiling_gap"]]
    verdicts = pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True)
    return verdicts.merge(audit, on=["candidate", "reference", "metric"], how="left")
