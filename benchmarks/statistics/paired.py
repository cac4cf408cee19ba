"""Paired comparisons of two latent spaces on editing metrics: bootstrap confidence intervals and p-values.

Definitions, for images i = 1..n with a value in both spaces, candidate values c_i and reference values r_i
(one value per image, already averaged over edit directions and strengths):
  improvement d_i = c_i - r_i   when higher is better (identity similarity, attribute gain),
                d_i = r_i - c_i when lower is better (LPIPS, attribute leakage),
so d_i > 0 means the candidate did better on image i, and mean_improvement = mean(d) > 0 favours it.

Confidence interval (`paired_bootstrap`): percentile bootstrap over images. The image indices are resampled
with replacement `samples` times (numpy Generator from `seed`); the interval is the (1 - confidence) / 2 and
(1 + confidence) / 2 quantiles of the resampled means of d. It assumes the images are an i.i.d. sample and
n is not tiny; for small n percentile intervals are somewhat too narrow.

p-value (`paired_bootstrap`): two-sided sign-flip permutation test of H0: mean(d) = 0. Under H0 it assumes
the d_i are independent and each symmetric about 0, so that every sign pattern of d is equally likely. With
n <= EXACT_MAX_N all 2^n patterns are enumerated and p is the fraction (observed pattern included) whose
|mean| >= the observed |mean|; with larger n, `samples` random patterns are drawn (seeded) and
p = (count + 1) / (samples + 1). For skewed d with mean 0 the test is only approximate.

Set statistics (`bootstrap_set_difference`, e.g. KID(candidate) - KID(reference), sign chosen by the caller
so that > 0 is an improvement): the same resampled image indices are used for both spaces, which keeps the
comparison paired. Its p-value min(1, 2 * min(P*(boot <= 0), P*(boot >= 0))), with P* = (count + 1) /
(samples + 1), is an approximate bootstrap p-value (it reads the bootstrap distribution as if centred on the null),
good only as a rough guide; it is raised to 2^(1 - n), the smallest p a two-sided sign-flip test over n images can
give, so that a set statistic decides nothing from fewer images than a per-image metric could (with 2 images the
bootstrap has 3 distinct resamples, and its p was 0: a "better" from 2 images).

Smallest effect that matters (`margin` >= 0, in the metric's units; the caller sets it, e.g. a fraction of the
metric's floor-to-ceiling gap, benchmarks.statistics.editing). `verdict` reads the interval, the p-value and the
margin, with alpha = 1 - confidence:
  "equivalent"    margin > 0, the whole interval lies inside [-margin, +margin] and, for per-image metrics, the
                  sign-flip TOST p-value (`equivalence_p_value`, below) is < alpha. This is TOST read off the
                  existing `confidence` interval, not the usual 1 - 2 * alpha one: each bound is a one-sided test at
                  (1 - confidence) / 2 (0.025 at 95 %), conservative on purpose, as percentile intervals are too
                  narrow for small n. For set metrics (no per-image differences) the interval alone decides.
  "better"        the interval lies above 0, p < alpha and mean_improvement >= margin;
  "worse"         the interval lies below 0, p < alpha and mean_improvement <= -margin;
                  so a resolved difference smaller than the margin is never "better"/"worse": it is "equivalent"
                  when its interval lies inside the margins, else "not resolved";
  "not resolved"  otherwise; "uninformative" when the metric cannot tell the spaces apart in this setting
                  (decided by the caller). With margin 0 (no smallest effect given) nothing is "equivalent" and
                  "better"/"worse" are the interval-and-p rule alone.
equivalence_p_value (`paired_bootstrap`): two one-sided sign-flip tests (TOST), of H0: mean(d) <= -margin on
d + margin (alternative: greater) and of H0: mean(d) >= margin on d - margin (alternative: less), each like the
two-sided test above (exact up to EXACT_MAX_N, else `samples` seeded patterns); p = the larger of the two.

`images_needed`, reported beside a "not resolved": how many images (in all, not more) the observed mean and spread
would need to be decided at alpha with power POWER (0.8), by the normal approximation
  n = ceil(((z_{1 - alpha / 2} + z_{POWER}) * sd / distance)^2),
  distance = |mean_improvement|            when |mean_improvement| >= margin (to resolve "better"/"worse"),
           = margin - |mean_improvement|   when it is smaller (to fit the interval inside the margins:
                                           "equivalent"; z_{1 - alpha / 2} as each bound is a test at alpha / 2),
sd = the standard deviation of the per-image differences d (set metrics: the bootstrap standard error times
sqrt(n)). It is at least n + 1 (n images did not decide it, whatever the approximation says) and, where the
verdict also needs the exact sign-flip p-value, at least the fewest images with which that test can reach alpha at
all (2 / 2^n < alpha for "better"/"worse", 1 / 2^n < alpha for "equivalent": 6 and 5 at alpha 0.05). NaN when the
mean or sd is not finite, or the mean and the margin are both 0 (nothing to decide). A planning figure, not a
promise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

EXACT_MAX_N = 16  # enumerate all 2^n sign patterns up to this n
POWER = 0.8  # images_needed: the chance of deciding, were the observed mean and spread the true ones
_CHUNK = 1 << 20  # elements per block when resampling, to bound memory
COLUMNS = (
    "candidate",
    "reference",
    "metric",
    "better",
    "n",
    "n_missing",
    "mean_candidate",
    "mean_reference",
    "mean_improvement",
    "ci_low",
    "ci_high",
    "p_value",
    "verdict",
    "margin",
    "equivalence_p_value",
    "sd_improvement",
    "images_needed",
)


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    candidate: str
    reference: str
    metric: str
    better: str  # "lower" or "higher"
    n: int  # complete pairs used
    n_missing: int  # pairs dropped because a value was NaN
    mean_candidate: float
    mean_reference: float
    mean_improvement: float  # mean of d, > 0 = candidate better
    sd_improvement: float  # standard deviation of d (ddof 1)
    ci_low: float  # percentile bootstrap interval of mean(d)
    ci_high: float
    confidence: float
    p_value: float  # two-sided sign-flip permutation test of mean(d) = 0
    margin: float  # smallest improvement that matters
    equivalence_p_value: float  # sign-flip TOST of |mean(d)| >= margin
    samples: int
    seed: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_options(samples: int, confidence: float) -> None:
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _sign_flip_p(d: np.ndarray, samples: int, rng: np.random.Generator, *, alternative: str = "two-sided") -> float:
    """Sign-flip p-value of H0: the d_i are symmetric about 0. alternative: "two-sided" counts flipped sums with
    |sum| >= |observed sum|, "greater" those >= the observed sum, "less" those <= it."""
    n = len(d)
    observed = d.sum()
    tol = 1e-9 * np.abs(d).sum()  # flipped sums equal to the observed one must count despite rounding
    extreme = {
        "two-sided": lambda sums: np.abs(sums) >= abs(observed) - tol,
        "greater": lambda sums: sums >= observed - tol,
        "less": lambda sums: sums <= observed + tol,
    }[alternative]
    if n <= EXACT_MAX_N:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1  # [2^n, n]
        return float(np.mean(extreme(signs @ d)))
    count, rows = 0, max(1, _CHUNK // n)
    for start in range(0, samples, rows):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(rows, samples - start), n))
        count += int(np.sum(extreme(signs @ d)))
    return (count + 1) / (samples + 1)


def _check_margin(margin: float, *, where: str) -> None:
    if not (np.isfinite(margin) and margin >= 0):  # NaN fails too
        raise ValueError(f"{where}: margin must be a finite number >= 0, got {margin!r}")


def paired_bootstrap(
    candidate,
    reference,
    *,
    better: str,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    candidate_name: str = "candidate",
    reference_name: str = "reference",
    metric: str = "",
    margin: float = 0.0,
) -> PairedComparison:
    """Compare per-image values `candidate` and `reference` ([n], same image order); see the module docstring.
    margin: the smallest improvement that matters, for the equivalence test (0: none given)."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r} (metric {metric!r})")
    _check_options(samples, confidence)
    _check_margin(margin, where=f"metric {metric!r}")
    c, r = np.asarray(candidate, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    if c.shape != r.shape:
        raise ValueError(f"metric {metric!r}: candidate and reference must be paired, got {c.size} and {r.size} values")
    keep = ~(np.isnan(c) | np.isnan(r))
    c, r = c[keep], r[keep]
    n = len(c)
    if n < 2:
        raise ValueError(f"metric {metric!r}: paired bootstrap needs at least 2 complete pairs, got {n}")
    d = (c - r) if better == "higher" else (r - c)
    # a third stream for the equivalence test leaves the first two, and so the interval and p, as before
    boot_rng, flip_rng, equivalence_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    means, rows = [], max(1, _CHUNK // n)
    for start in range(0, samples, rows):
        idx = boot_rng.integers(0, n, size=(min(rows, samples - start), n))
        means.append(d[idx].mean(axis=1))
    low, high = np.quantile(np.concatenate(means), [(1 - confidence) / 2, (1 + confidence) / 2])
    return PairedComparison(
        candidate=str(candidate_name),
        reference=str(reference_name),
        metric=str(metric),
        better=better,
        n=n,
        n_missing=int((~keep).sum()),
        mean_candidate=float(c.mean()),
        mean_reference=float(r.mean()),
        mean_improvement=float(d.mean()),
        sd_improvement=float(d.std(ddof=1)),
        ci_low=float(low),
        ci_high=float(high),
        confidence=float(confidence),
        p_value=_sign_flip_p(d, int(samples), flip_rng),
        margin=float(margin),
        equivalence_p_value=max(
            _sign_flip_p(d + margin, int(samples), equivalence_rng, alternative="greater"),
            _sign_flip_p(d - margin, int(samples), equivalence_rng, alternative="less"),
        ),
        samples=int(samples),
        seed=int(seed),
    )


def bootstrap_set_difference(
    statistic: Callable[[np.ndarray], float], n: int, *, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float, float]:
    """Bootstrap a set statistic's improvement. `statistic(indices)` gets int image indices [n] (the same for
    both spaces) and returns the improvement (> 0 = candidate better). Returns (estimate on np.arange(n),
    ci_low, ci_high, p_value); the p-value is the approximate one of the module docstring."""
    _check_options(samples, confidence)
    if int(n) != n or n < 2:
        raise ValueError(f"bootstrap_set_difference needs n >= 2 images, got {n!r}")
    n = int(n)
    estimate = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    boot = np.array([float(statistic(rng.integers(0, n, size=n))) for _ in range(int(samples))])
    if not (np.isfinite(estimate) and np.isfinite(boot).all()):
        raise ValueError("bootstrap_set_difference: statistic returned a non-finite value")
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    tail = min(int(np.sum(boot <= 0)), int(np.sum(boot >= 0)))
    p = min(1.0, max(2 * (tail + 1) / (len(boot) + 1), 2.0 ** (1 - n)))
    return estimate, float(low), float(high), p


def verdict(
    ci_low: float,
    ci_high: float,
    *,
    informative: bool = True,
    p_value: float | None = None,
    alpha: float = 0.05,
    mean_improvement: float | None = None,
    margin: float = 0.0,
    equivalence_p_value: float | None = None,
) -> str:
    """ "uninformative" if not informative; "equivalent" if margin > 0 and -margin <= ci_low, ci_high <= margin
    (and equivalence_p_value < alpha when given); "better" if ci_low > 0 and mean_improvement >= margin, "worse"
    if ci_high < 0 and mean_improvement <= -margin, each, when a p-value is given, only if also p_value < alpha:
    with a handful of images the percentile interval is too narrow (6 in-domain targets: an interval excluding 0
    at an exact sign-flip p of 0.0625); else "not resolved". The margin rule is the module docstring's; with
    margin 0, mean_improvement may be left out."""
    if not informative:
        return "uninformative"
    _check_margin(margin, where="verdict")
    if mean_improvement is None and margin > 0:
        raise ValueError(f"verdict: a margin ({margin}) needs mean_improvement, to tell a difference that matters")
    within = -margin <= ci_low and ci_high <= margin
    if margin > 0 and within and (equivalence_p_value is None or equivalence_p_value < alpha):
        return "equivalent"
    significant = p_value is None or p_value < alpha
    mean = 0.0 if mean_improvement is None else mean_improvement  # margin 0 here: the size rule always holds
    if ci_low > 0 and significant and mean >= margin:
        return "better"
    if ci_high < 0 and significant and mean <= -margin:
        return "worse"
    return "not resolved"


def images_needed(
    mean_improvement: float,
    sd_improvement: float,
    *,
    margin: float,
    images: int = 0,
    alpha: float = 0.05,
    power: float = POWER,
    sign_flip: bool = False,
) -> float:
    """How many images the observed mean and per-image sd would need to be decided (module docstring):
    the fewest to resolve "better"/"worse" when |mean_improvement| >= margin, else to show "equivalent".
    images: how many the undecided comparison had (0: not given); sign_flip: the verdict also needs the exact sign-flip
    p-value (per-image metrics). NaN where undefined."""
    values = (mean_improvement, sd_improvement, margin)
    if not (all(np.isfinite(values)) and sd_improvement >= 0 and margin >= 0):
        return np.nan
    size = abs(mean_improvement)
    to_resolve = size >= margin
    distance = size if to_resolve else margin - size
    if distance == 0:  # no difference and no margin: nothing to decide
        return np.nan
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    needed = max(math.ceil((z * sd_improvement / distance) ** 2), images + 1, 2)
    if sign_flip:
        # the smallest attainable sign-flip p-value: 2 / 2^n two-sided, 1 / 2^n for each one-sided TOST test
        tails = 2 if to_resolve else 1
        while tails / 2**needed >= alpha:
            needed += 1
    return float(needed)


def _row_seed(seed: int, candidate: str, reference: str, metric: str) -> int:
    key = json.dumps([int(seed), str(candidate), str(reference), str(metric)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1  # fits in int64


def comparison_table(
    frame: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    metrics: Mapping[str, str],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    informative: Mapping[tuple[str, str, str], bool] | None = None,
    margins: Mapping[tuple[str, str, str], float] | None = None,
) -> pd.DataFrame:
    """One row per (candidate, reference) pair and metric of `metrics` (name -> better) present in `frame`
    (long: space, image_id, metric, value; one value per space, image and metric). Images are matched by
    image_id; ids present for only one of the two spaces, and NaN pairs, are counted in n_missing.
    informative, margins: per (candidate, reference, metric), default True and 0 (no smallest effect given).
    images_needed is filled for "not resolved" rows only."""
    missing = {"space", "image_id", "metric", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"comparison_table: columns {sorted(missing)} missing; columns are {list(frame.columns)}")
    keys = ["space", "image_id", "metric"]
    duplicated = frame.duplicated(keys, keep=False)
    if duplicated.any():
        examples = frame.loc[duplicated, keys].drop_duplicates().head(5).values.tolist()
        raise ValueError(f"comparison_table: repeated (space, image_id, metric) rows, e.g. {examples}")
    spaces = set(frame["space"])
    rows = []
    for candidate, reference in pairs:
        for space in (candidate, reference):
            if space not in spaces:
                raise ValueError(f"comparison_table: no rows for space {space!r}; spaces are {sorted(spaces, key=str)}")
        for metric, better in metrics.items():
            subset = frame[frame["metric"] == metric]
            if subset.empty:
                continue
            margin = (margins or {}).get((candidate, reference, metric), 0.0)
            c = subset[subset["space"] == candidate].set_index("image_id")["value"]
            r = subset[subset["space"] == reference].set_index("image_id")["value"]
            images = c.index.intersection(r.index).sort_values()
            unmatched = len(c.index.symmetric_difference(r.index))
            cv, rv = c.loc[images].to_numpy(np.float64), r.loc[images].to_numpy(np.float64)
            complete = int((~(np.isnan(cv) | np.isnan(rv))).sum())
            if complete < 2:  # no interval can be drawn (e.g. one in-domain target): reported, never a verdict
                rows.append(
                    dict(
                        candidate=candidate,
                        reference=reference,
                        metric=metric,
                        better=better,
                        n=complete,
                        n_missing=len(images) - complete + unmatched,
                        mean_candidate=np.nanmean(cv) if complete else np.nan,
                        mean_reference=np.nanmean(rv) if complete else np.nan,
                        mean_improvement=np.nan,
                        ci_low=np.nan,
                        ci_high=np.nan,
                        p_value=np.nan,
                        verdict="not resolved",
                        margin=margin,
                        equivalence_p_value=np.nan,
                        sd_improvement=np.nan,
                        images_needed=np.nan,
                    )
                )
                continue
            result = paired_bootstrap(
                c.loc[images].to_numpy(),
                r.loc[images].to_numpy(),
                better=better,
                samples=samples,
                confidence=confidence,
                seed=_row_seed(seed, candidate, reference, metric),
                candidate_name=candidate,
                reference_name=reference,
                metric=metric,
                margin=margin,
            )
            row = result.as_dict()
            row["n_missing"] += unmatched
            row["verdict"] = verdict(
                result.ci_low,
                result.ci_high,
                p_value=result.p_value,
                alpha=1 - confidence,
                informative=(informative or {}).get((candidate, reference, metric), True),
                mean_improvement=result.mean_improvement,
                margin=margin,
                equivalence_p_value=result.equivalence_p_value,
            )
            row["images_needed"] = (
                images_needed(
                    result.mean_improvement,
                    result.sd_improvement,
                    margin=margin,
                    images=result.n,
                    alpha=1 - confidence,
                    sign_flip=True,
                )
                if row["verdict"] == "not resolved"
                else np.nan
            )
            rows.append({column: row[column] for column in COLUMNS})
    return pd.DataFrame(rows, columns=list(COLUMNS))


__all__ = [
    "EXACT_MAX_N",
    "POWER",
    "PairedComparison",
    "paired_bootstrap",
    "bootstrap_set_difference",
    "verdict",
    "images_needed",
    "comparison_table",
]
