"""editing_verdicts, recomputed (benchmarks.audit.recompute has the overview): per configured pair and metric, the
per-image values from edits/ (tables/editing_per_image.csv for identity_matched*), the informative flags and
equivalence margins from editing/, the paired comparison (scipy's bootstrap and sign-flip permutation tests; a KID
bootstrap for realism_kid) against this module's own draws, and the verdict word.

Tolerances (the exact, FLOAT and PIXEL ones: benchmarks.audit.cells):
  Monte-Carlo bands, for what the suite draws (B = statistics.bootstrap_samples), against this module's own draws:
    a percentile endpoint at level q is the suite's order statistic j = floor((B - 1) q) + 1 or j + 1, whose levels
    are Beta(j, B - j + 1) and Beta(j + 1, B - j) distributed; it passes between this module's bootstrap quantiles at
    the TAIL (1e-5) quantile of the first and the 1 - TAIL quantile of the second, widened by Z = 4 binomial SEs of
    this module's draws. A Monte-Carlo p (sign flips for n > EXACT_N, the KID bootstrap's) passes if its count of B is
    within the TAIL quantiles of the binomial at this module's p -/+ Z SEs. No false alarm in 40 suite seeds x 40
    audit seeds on a synthetic run, nor in 1600 cells at n = 10 and 30. Width: one value at the ci runs' 2 images (a
    1e-3 change fails); at B = 2000, 0.6-0.7 standard errors of the mean for 12 to 100 images (2 SE at 6 images, B =
    200), so a 1e-3 change to an interval fails only where the metric's standard error is below ~1.5e-3.
  verdict words (and non_inferior): recomputed by the rule of the suite's docs (paired.py, editing.py). A comparison
    with 0, +-margin or alpha that a tolerance band straddles is undecided; any word one of its outcomes gives
    passes, and the Check's tolerance names the words allowed. images_needed is not checked where the word itself
    may or may not be "not resolved".
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.audit.cells import EXACT_N, TAIL, Band, Z, around, compare, fail, mean, read, words
from benchmarks.audit.checks import Check

EDIT_METRICS = {"identity": False, "identity_matched": False, "identity_in_domain": False}  # -> lower is better
EDIT_METRICS |= {"identity_matched_in_domain": False, "fidelity_perceptual": True, "fidelity_mse": True}
MATCHED = {"identity_matched": "identity", "identity_matched_in_domain": "identity_in_domain"}


def kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2, cubic polynomial kernel (a.b / d + 1)^3: off-diagonal means within, full mean across."""
    kernel = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3  # noqa: E731
    off = lambda k: k[~np.eye(len(k), dtype=bool)].mean()  # noqa: E731
    return float(off(kernel(x, x)) + off(kernel(y, y)) - 2 * kernel(x, y).mean()) if len(x) > 1 else math.nan


def _informative(recon: pd.Series, refs: pd.DataFrame, *, lower: bool, minimum: float) -> tuple[bool, float]:
    """(informative, |ceiling - best floor|), by the rule of benchmarks.metrics.sanity's docs: the weakest ceiling above
    the best floor (medians over images), reconstructions beating that floor on significantly more than half the
    images (one-sided sign test, ties dropped) and at least `minimum` of the way from it to the ceiling."""
    sign = -1.0 if lower else 1.0
    recon = recon[recon.index.isin(refs.image_id)].dropna() * sign
    medians, kinds = refs.groupby("reference")["value"].median() * sign, refs.groupby("reference")["kind"].first()
    floors, ceilings = (medians[kinds == kind].dropna() for kind in ("floor", "ceiling"))
    if len(recon) < 2 or floors.empty or ceilings.empty:
        return False, math.nan
    floor, span = floors.idxmax(), ceilings.min() - floors.max()
    floor_values = refs[refs.reference == floor].set_index("image_id")["value"].rename("floor") * sign
    both = pd.concat([recon.rename("recon"), floor_values], axis=1, join="inner").dropna()
    wins, losses = int((both.recon > both.floor).sum()), int((both.recon < both.floor).sum())
    p = stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    separation = (recon.median() - floors.max()) / span if span > 0 else math.nan
    return bool(span > 0 and p < 0.05 and separation >= minimum), float(abs(span))


def _per_image(results, cfg, sets, fidelity, baselines, checks) -> tuple[dict, dict]:
    """(metric, space) -> per-image values (means over edits with alpha != 0, an undetected face scored at the metric's
    floor: the median 'other' similarity) and -> (informative, gap), from edits/ and editing/baselines.csv."""
    values, flags, minimum = {}, {}, cfg["statistics"]["min_separation"]

    def collect(frame: pd.DataFrame, metric: str, refs: pd.DataFrame, lower: bool) -> None:
        for space, group in frame.groupby("space"):
            values[(metric, space)] = group[group.alpha != 0].groupby("image_id")["value"].mean()
            recon = group[group.alpha == 0].drop_duplicates("image_id").set_index("image_id")["value"]
            mine = refs[refs.image_id.isin(recon.index)]  # the edited targets, of all the targets referenced
            flags[(metric, space)] = _informative(recon, mine, lower=lower, minimum=minimum)

    for metric, frames in sets.items():
        frame = pd.concat([f for f in frames.values() if f is not None and not f.empty] or [pd.DataFrame()])
        other = baselines[(baselines.metric == metric) & (baselines.reference == "other")]["value"]
        if not frame.empty and other.empty:
            checks.append(fail("editing/baselines.csv", f"{metric} 'other' rows", "the metric's floor"))
        elif not frame.empty:
            floor = float(other.median())
            frame = frame.assign(value=frame.similarity.where(frame.edited_detected.astype(bool), floor))
            collect(frame, metric, baselines[baselines.metric == metric].fillna({"value": floor}), False)
    moved = pd.concat([f for f in fidelity.values() if f is not None and not f.empty] or [pd.DataFrame()])
    for column in ("perceptual", "mse") if not moved.empty else ():
        metric = f"fidelity_{column}"
        collect(moved.assign(value=moved[column]), metric, baselines[baselines.metric == metric], True)
    table = read(results, "tables/editing_per_image.csv", checks)
    for metric, source in MATCHED.items() if table is not None else ():
        for space, group in table[table.metric == metric].groupby("space"):
            values[(metric, space)] = group.set_index("image_id")["value"].astype(float)
            flags[(metric, space)] = flags.get((source, space), (False, math.nan))
    return values, flags


def verdicts(results, cfg, sets, fidelity, realism, reference, kids, checks, resamples, rng) -> list[Check]:
    """editing_verdicts: per configured pair and metric, the paired comparison and its word (module docstring)."""
    s = cfg["statistics"]
    baselines, kid_refs = (read(results, f"editing/{f}", checks) for f in ("baselines.csv", "realism_baselines.csv"))
    if baselines is None or kid_refs is None:
        return []
    values, flags = _per_image(results, cfg, sets, fidelity, baselines, checks)
    for space, value in kids.items():  # a set metric: no sign test; lower is better, so floors and ceilings negate
        floors, ceilings = (-kid_refs[kid_refs.kind == k]["kid"].dropna() for k in ("floor", "ceiling"))
        span = ceilings.min() - floors.max() if len(floors) and len(ceilings) and np.isfinite(value) else math.nan
        flags[("realism_kid", space)] = (
            bool(span > 0 and (-value - floors.max()) / span >= s["min_separation"]),
            abs(span),
        )
    equivalence = s.get("equivalence") or {}
    fraction, per_metric, cells = equivalence.get("fraction", 0.05), equivalence.get("metrics") or {}, {}
    options = dict(confidence=s["confidence"], samples=s["bootstrap_samples"], resamples=resamples, rng=rng)
    for (a, b), metric in itertools.product(s["pairs"], [*EDIT_METRICS, "realism_kid"]):
        (ok_a, gap_a), (ok_b, gap_b) = (flags.get((metric, x), (False, math.nan)) for x in (a, b))
        gap, share = (
            min(gap_a, gap_b) if np.isfinite([gap_a, gap_b]).all() else math.nan,
            per_metric.get(metric, fraction),
        )
        common = dict(
            margin=share * gap if np.isfinite(gap) else 0.0, margin_fraction=float(share), floor_ceiling_gap=gap
        )
        judge = dict(margin=common["margin"], informative=ok_a and ok_b, **options)
        if metric == "realism_kid" and a in realism and b in realism:
            cells[(a, b, metric)] = _kid_row(realism[a], realism[b], reference["features"], **judge) | common
        elif any(m == metric for m, _ in values):
            c, r = (values.get((metric, x), pd.Series(dtype=float)) for x in (a, b))
            cells[(a, b, metric)] = _paired_row(c, r, lower=EDIT_METRICS[metric], **judge) | common
    return compare(results, "editing_verdicts", ["candidate", "reference", "metric"], cells)


def _paired_row(c: pd.Series, r: pd.Series, *, lower, margin, informative, confidence, samples, resamples, rng) -> dict:
    """A per-image metric: scipy's bootstrap for the interval, its sign-flip permutation tests for p and TOST."""
    images = c.index.intersection(r.index).sort_values()
    cv, rv = c.loc[images].to_numpy(np.float64), r.loc[images].to_numpy(np.float64)
    keep = ~(np.isnan(cv) | np.isnan(rv))
    row = dict(better="lower" if lower else "higher", n=int(keep.sum()), mean_candidate=mean(cv[keep]))
    row |= dict(n_missing=len(images) - row["n"] + len(c.index.symmetric_difference(r.index)))
    row |= dict(mean_reference=mean(rv[keep]))
    if row["n"] < 2:  # no interval: reported, never decided
        empty = ("mean_improvement", "ci_low", "ci_high", "p_value", "equivalence_p_value", "sd_improvement")
        return row | dict.fromkeys(empty, math.nan) | dict(verdict="not resolved", images_needed=math.nan)
    d = (rv - cv if lower else cv - rv)[keep]
    with warnings.catch_warnings():  # a constant d (identical spaces) warns and still has its one-point distribution
        warnings.simplefilter("ignore")
        boot = stats.bootstrap((d,), np.mean, n_resamples=resamples, method="percentile", batch=2000, rng=rng)
    low, high = _percentile_bands(boot.bootstrap_distribution, confidence, samples, resamples)
    flip = lambda x, side: _flip_p(x, side, samples=samples, draws=resamples, rng=rng)  # noqa: E731
    tost = flip(d + margin, "greater"), flip(d - margin, "less")
    if isinstance(tost[0], Band):  # the larger of two Monte-Carlo p-values
        t, u = tost
        tost = (Band(max(t.estimate, u.estimate), max(t.low, u.low), max(t.high, u.high), t.tolerance),)
    sd = float(np.std(d, ddof=1))
    row |= dict(mean_improvement=float(np.mean(d)), ci_low=low, ci_high=high, p_value=flip(d, "two-sided"))
    row |= dict(equivalence_p_value=max(tost), sd_improvement=sd)
    return _judged(
        row, margin=margin, informative=informative, alpha=1 - confidence, sign_flip=True, sd=(sd, *around(sd))
    )


def _kid_row(ra, rb, reference, *, margin, informative, confidence, samples, resamples, rng) -> dict:
    """realism_kid: KID(reference space) - KID(candidate) over edits with alpha != 0, scipy's bootstrap over the shared
    images (a drawn image brings all its rows; a row drawn twice makes a distinct pair, as the suite's docs say)."""
    kernel = lambda x, y: (x @ y.T / x.shape[1] + 1.0) ** 3  # noqa: E731
    kyy = kernel(reference, reference)
    within_reference = kyy[~np.eye(len(kyy), dtype=bool)].mean()
    edited = [(r["features"][r["alpha"] != 0], r["image_id"][r["alpha"] != 0]) for r in (ra, rb)]
    images = sorted(set(edited[0][1]) & set(edited[1][1]))
    blocks = [(kernel(x, x), kernel(x, reference), [np.flatnonzero(ids == i) for i in images]) for x, ids in edited]

    def kid_of(block, picks) -> float:
        kxx, kxy, rows_of = block
        rows = np.concatenate([rows_of[int(k)] for k in picks])
        return kxx[np.ix_(rows, rows)][~np.eye(len(rows), dtype=bool)].mean() + within_reference - 2 * kxy[rows].mean()

    statistic = lambda picks: kid_of(blocks[1], picks) - kid_of(blocks[0], picks)  # noqa: E731
    draws = max(resamples // 4, 1000)  # a KID pair per draw: a quarter of the per-image metrics' draws
    boot = stats.bootstrap(
        (np.arange(len(images)),), statistic, vectorized=False, n_resamples=draws, method="percentile", rng=rng
    )
    distribution = boot.bootstrap_distribution
    low, high = _percentile_bands(distribution, confidence, samples, draws)
    n, z = len(set(ra["image_id"])), stats.norm.ppf((1 + confidence) / 2)
    floor = 2.0 ** (1 - len(images))  # the suite's: over the images its bootstrap draws
    p = min(1.0, max(2 * min(np.mean(distribution <= 0), np.mean(distribution >= 0)), floor))
    ends = [(low.estimate, high.estimate), (low.high, high.low), (low.low, high.high)]
    sd = [max(hi - lo, 0.0) / (2 * z) * math.sqrt(n) for lo, hi in ends]  # the suite's: a normal interval's SE * sqrt n
    row = dict(better="lower", n=n, n_missing=0, mean_candidate=kid(edited[0][0], reference))
    row |= dict(mean_reference=kid(edited[1][0], reference), mean_improvement=statistic(np.arange(len(images))))
    row |= dict(
        ci_low=low, ci_high=high, p_value=_mc_p(p, samples, draws, kid_images=len(images)), equivalence_p_value=math.nan
    )
    row |= dict(sd_improvement=Band(sd[0], min(sd), max(sd), "Monte-Carlo: from the interval's bands"))
    return _judged(row, margin=margin, informative=informative, alpha=1 - confidence, sign_flip=False, sd=sd)


def _judged(row: dict, *, margin, informative, alpha, sign_flip: bool, sd) -> dict:
    """The verdict word(s) from the row's own figures by paired.py's documented rule, and images_needed beside a
    "not resolved"; sd: the improvement's sd, then the ends of its tolerance band."""
    if not informative:
        return row | dict(verdict="uninformative", images_needed=math.nan)
    names = ("ci_low", "ci_high", "p_value", "equivalence_p_value", "mean_improvement")
    span = {k: (row[k].low, row[k].high) if isinstance(row[k], Band) else around(row[k]) for k in names}
    test = lambda key, rule: {rule(x) for x in span[key]} if np.isfinite(span[key]).all() else {True}  # noqa: E731
    atoms = dict(
        inside_low=test("ci_low", lambda x: -margin <= x),
        inside_high=test("ci_high", lambda x: x <= margin),
        equivalent_p=test("equivalence_p_value", lambda x: x < alpha),
        significant=test("p_value", lambda x: x < alpha),
        above_zero=test("ci_low", lambda x: x > 0),
        below_zero=test("ci_high", lambda x: x < 0),
        large_gain=test("mean_improvement", lambda x: x >= margin),
        large_loss=test("mean_improvement", lambda x: x <= -margin),
    )
    allowed = set()
    for outcome in itertools.product(*atoms.values()):
        a = dict(zip(atoms, outcome))
        if margin > 0 and a["inside_low"] and a["inside_high"] and a["equivalent_p"]:
            allowed.add("equivalent")
        elif a["above_zero"] and a["significant"] and a["large_gain"]:
            allowed.add("better")
        elif a["below_zero"] and a["significant"] and a["large_loss"]:
            allowed.add("worse")
        else:
            allowed.add("not resolved")
    row["verdict"] = words(allowed, "undecided: " + ", ".join(k for k, v in atoms.items() if len(v) == 2))
    if allowed == {"not resolved"}:
        needed = [
            _needed(row["mean_improvement"], x, margin=margin, n=row["n"], alpha=alpha, sign_flip=sign_flip) for x in sd
        ]
        why = (
            "Monte-Carlo: from the interval's bands"
            if not sign_flip
            else "exact, up to a ceiling at the sd's FLOAT band"
        )
        row["images_needed"] = Band(needed[0], min(needed), max(needed), why)
    elif "not resolved" not in allowed:
        row["images_needed"] = math.nan
    return row


def _needed(mean: float, sd: float, *, margin: float, n: int, alpha: float, sign_flip: bool) -> float:
    """Images to decide at alpha with power 0.8 by the normal approximation (paired.py's docs), at least n + 1 and, for
    sign-flip tests, enough for the smallest attainable p (2 / 2^k two-sided, 1 / 2^k each one-sided) to be < alpha."""
    resolve = abs(mean) >= margin
    distance = abs(mean) if resolve else margin - abs(mean)
    if not (np.isfinite([mean, sd, margin]).all() and sd >= 0) or distance == 0:
        return math.nan
    needed = max(math.ceil(((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)) * sd / distance) ** 2), n + 1, 2)
    while sign_flip and (2 if resolve else 1) / 2**needed >= alpha:
        needed += 1
    return float(needed)


def _flip_p(d: np.ndarray, side: str, *, samples: int, draws: int, rng) -> float | Band:
    """scipy's sign-flip permutation test of mean(d) = 0: exact (all 2^n patterns) where the suite's is exact."""
    exact = len(d) <= EXACT_N
    test = stats.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=np.inf if exact else draws, alternative=side, rng=rng
    )
    return float(test.pvalue) if exact else _mc_p(float(test.pvalue), samples, draws)


def _own_error(level: float, draws: int) -> float:
    """How far this module's own estimate of a probability level may be off: Z binomial SEs, plus one draw."""
    return Z * math.sqrt(level * (1 - level) / draws) + 1 / draws


def _mc_p(p: float, samples: int, draws: int, *, kid_images: int | None = None) -> Band:
    """The suite's Monte-Carlo p from B draws: (K + 1) / (B + 1) with K ~ Binomial(B, p) for sign flips, and
    min(1, max(2 (K + 1) / (B + 1), 2^(1 - n))) with K ~ Binomial(B, p / 2) for the KID bootstrap over n images (the
    floor: a sign-flip test's smallest p over n images); K between its TAIL and 1 - TAIL quantiles."""
    kid = kid_images is not None
    share, error = (0.5 if kid else 1.0), _own_error(p, draws)
    counts = [
        stats.binom.ppf(t, samples, min(max(x, 0.0), 1.0) * share)
        for t, x in ((TAIL, p - error), (1 - TAIL, p + error))
    ]
    low, high = (
        min(1.0, max(2 * (k + 1) / (samples + 1), 2.0 ** (1 - kid_images))) if kid else (k + 1) / (samples + 1)
        for k in counts
    )
    return Band(p, low, high, f"Monte-Carlo p: the binomial count of B = {samples} draws within its {TAIL:g} tails")


def _percentile_bands(distribution: np.ndarray, confidence: float, samples: int, draws: int) -> tuple[Band, Band]:
    """The suite's percentile endpoint at level q interpolates its order statistics j and j + 1 of B draws, whose
    probability levels are Beta(j, B - j + 1) and Beta(j + 1, B - j): the band spans this module's quantiles from the
    TAIL quantile of the first to the 1 - TAIL quantile of the second, widened by this module's own error."""
    bands = []
    for q in ((1 - confidence) / 2, (1 + confidence) / 2):
        j = math.floor((samples - 1) * q) + 1
        first, last = stats.beta.ppf(TAIL, j, samples - j + 1), stats.beta.ppf(1 - TAIL, j + 1, samples - j)
        levels = [max(first - _own_error(first, draws), 0.0), q, min(last + _own_error(last, draws), 1.0)]
        low, estimate, high = np.quantile(distribution, levels)
        why = f"Monte-Carlo bootstrap: within this module's quantiles at {levels[0]:.3g}, {levels[2]:.3g} (B {samples})"
        bands.append(Band(float(estimate), around(float(low))[0], around(float(high))[1], why))
    return bands[0], bands[1]
