"""Paired one-sided non-inferiority tests of one latent space against another on a per-image metric (paper §4).

The paper: "Our results are competitive with those by F/W+(P_N) space, as shown by a non-inferiority
test with a margin of 1e-8, yielding p-values of .002983 for MSE and .001609 for SSIM." It does not say
which test; this module implements the usual paired ones and names the one used in every result.

Definitions, for images i = 1..n present in both spaces, candidate values c_i and reference values r_i:
  improvement d_i = c_i - r_i   when higher is better (SSIM, PSNR, identity similarity),
                d_i = r_i - c_i when lower is better (MSE, LPIPS),
so d_i > 0 means the candidate did better on image i. With margin delta >= 0:
  H0 (inferior):     the candidate is worse than the reference by delta or more:  theta <= -delta
  H1 (non-inferior): the candidate is worse by less than delta, or better:        theta >  -delta
where theta is the mean of d ("paired-t": one-sample t-test of d against -delta, one-sided, n - 1
degrees of freedom; assumes d roughly normal or n large) or the pseudo-median of d ("wilcoxon": signed-
rank test of d + delta, alternative "greater", scipy's exact null distribution for small n without
ties, else its normal approximation; zero differences are dropped as scipy does; assumes d symmetric).
Non-inferiority is declared when p < 1 - confidence, equivalently when the one-sided confidence bound
of theta lies above -delta. With the paper's margin 1e-8 on MSE (~0.02) this is in effect a one-sided
test that the candidate is not worse at all.

The reported `confidence_bound` is on the raw difference c - r (mean for paired-t, Hodges-Lehmann
pseudo-median for wilcoxon): a lower bound when higher is better, an upper bound when lower is better.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

TESTS = ("paired-t", "wilcoxon")
METRIC_BETTER = {
    "mse": "lower",
    "perceptual": "lower",
    "lpips": "lower",
    "ssim": "higher",
    "psnr": "higher",
    "identity_similarity": "higher",
    "similarity": "higher",
}  # defaults; override per call
EXACT_SIGNED_RANK_MAX_N = 400  # above this the Hodges-Lehmann bound uses the normal approximation


@dataclasses.dataclass(frozen=True)
class NonInferiorityResult:
    test: str
    better: str  # "lower" or "higher"
    margin: float
    confidence: float
    n: int  # pairs used
    n_missing: int  # pairs dropped because a value was NaN
    mean_candidate: float
    mean_reference: float
    mean_difference: float  # mean of (candidate - reference), raw units
    confidence_bound: float  # one-sided bound on (candidate - reference); see module docstring
    bound_side: str  # "lower" (higher is better) or "upper" (lower is better)
    statistic: float  # t, or the signed-rank sum T+ of d + margin
    p_value: float
    non_inferior: bool  # p_value < 1 - confidence
    h0: str
    h1: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def non_inferiority_test(
    candidate, reference, *, better: str, margin: float = 1e-8, test: str = "paired-t", confidence: float = 0.95
) -> NonInferiorityResult:
    """Paired one-sided non-inferiority test of `candidate` against `reference` (per-image values [n], same
    order). `better` is "lower" (MSE, LPIPS) or "higher" (SSIM). Pairs with a NaN are dropped and counted."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    c, r = np.asarray(candidate, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    if c.shape != r.shape:
        raise ValueError(f"candidate and reference must be paired: got {c.size} and {r.size} values")
    keep = np.isfinite(c) & np.isfinite(r)
    c, r = c[keep], r[keep]
    if len(c) < 2:
        raise ValueError(f"non-inferiority test needs at least 2 complete pairs, got {len(c)}")
    sign = 1.0 if better == "higher" else -1.0
    d = sign * (c - r)  # improvement of the candidate, > 0 = better
    alpha = 1 - confidence
    if test == "paired-t":
        result = stats.ttest_1samp(d, popmean=-margin, alternative="greater")
        statistic, p_value = float(result.statistic), float(result.pvalue)
        se = d.std(ddof=1) / math.sqrt(len(d))
        improvement_bound = d.mean() - stats.t.ppf(confidence, len(d) - 1) * se
        theta = "mean"
    else:
        result = stats.wilcoxon(d + margin, alternative="greater")
        statistic, p_value = float(result.statistic), float(result.pvalue)
        improvement_bound = _hodges_lehmann_lower_bound(d, alpha)
        theta = "pseudo-median"
    at_margin = f"{-sign * margin:+g}"  # the difference (candidate - reference) that is exactly the margin worse
    null, alternative = (">=", "<") if better == "lower" else ("<=", ">")
    return NonInferiorityResult(
        test=test,
        better=better,
        margin=float(margin),
        confidence=float(confidence),
        n=int(len(d)),
        n_missing=int((~keep).sum()),
        mean_candidate=float(c.mean()),
        mean_reference=float(r.mean()),
        mean_difference=float((c - r).mean()),
        confidence_bound=float(sign * improvement_bound),
        bound_side="lower" if better == "higher" else "upper",
        statistic=statistic,
        p_value=p_value,
        non_inferior=bool(p_value < alpha),
        h0=f"inferior: {theta} of (candidate - reference) {null} {at_margin} ({better} is better)",
        h1=f"non-inferior: {theta} of (candidate - reference) {alternative} {at_margin} ({better} is better)",
    )


def _hodges_lehmann_lower_bound(d: np.ndarray, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound of the pseudo-median of d: the Walsh average of rank
    M - t + 1, where M = n(n+1)/2 and t is the smallest signed-rank critical value with P0(T+ >= t) <= alpha
    (exact null distribution for n <= EXACT_SIGNED_RANK_MAX_N, normal approximation above)."""
    n = len(d)
    total = n * (n + 1) // 2
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)  # [M]
    if n <= EXACT_SIGNED_RANK_MAX_N:
        pmf = np.zeros(total + 1)
        pmf[0] = 1.0
        for k in range(1, n + 1):  # T+ = sum of a random subset of the ranks 1..n, each in with prob 1/2
            pmf[k:] = (pmf[k:] + pmf[:-k]) / 2  # right side is evaluated from the old pmf
            pmf[:k] /= 2
        upper_tail = np.cumsum(pmf[::-1])[::-1]  # P0(T+ >= t), t = 0..M
        critical = int(np.argmax(upper_tail <= alpha)) if upper_tail[-1] <= alpha else total + 1
    else:
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        critical = math.ceil(total / 2 + stats.norm.ppf(1 - alpha) * sd + 0.5)
    rank = total - critical + 1  # 1-based rank of the bound among the Walsh averages
    return float(walsh[rank - 1]) if rank >= 1 else -math.inf


def non_inferiority_table(
    frame: pd.DataFrame,
    comparisons: Sequence[tuple[str, str, str]],
    *,
    margin: float = 1e-8,
    test: str = "paired-t",
    confidence: float = 0.95,
    better: Mapping[str, str] | None = None,
    space_column: str = "space",
    image_column: str = "image",
) -> pd.DataFrame:
    """Run `non_inferiority_test` for each (candidate space, reference space, metric) on a long-format
    frame with one row per (space, image) and one column per metric. Images are paired by `image_column`;
    an image present for one space of a comparison but not the other is an error. `better` overrides
    METRIC_BETTER per metric. Returns one tidy row per comparison."""
    directions = {**METRIC_BETTER, **(better or {})}
    for column in (space_column, image_column):
        if column not in frame.columns:
            raise KeyError(f"non_inferiority_table: column {column!r} missing; columns are {list(frame.columns)}")
    duplicated = frame.duplicated([space_column, image_column])
    if duplicated.any():
        raise ValueError(
            f"non_inferiority_table: repeated (space, image) rows, e.g. "
            f"{frame.loc[duplicated, [space_column, image_column]].iloc[0].tolist()}"
        )
    rows = []
    for candidate, reference, metric in comparisons:
        if metric not in frame.columns:
            raise KeyError(
                f"non_inferiority_table: metric column {metric!r} missing; columns are {list(frame.columns)}"
            )
        if metric not in directions:
            raise KeyError(
                f"non_inferiority_table: is lower or higher {metric!r} better? pass better={{{metric!r}: ...}}"
            )
        values = {}
        for space in (candidate, reference):
            subset = frame[frame[space_column] == space]
            if subset.empty:
                raise ValueError(
                    f"non_inferiority_table: no rows for space {space!r}; spaces are "
                    f"{sorted(frame[space_column].unique())}"
                )
            values[space] = subset.set_index(image_column)[metric]
        unpaired = values[candidate].index.symmetric_difference(values[reference].index)
        if len(unpaired):
            raise ValueError(
                f"non_inferiority_table: images {list(unpaired)[:5]} are not in both {candidate!r} "
                f"and {reference!r}; the test needs paired images"
            )
        images = values[candidate].index.sort_values()
        result = non_inferiority_test(
            values[candidate].loc[images].to_numpy(),
            values[reference].loc[images].to_numpy(),
            better=directions[metric],
            margin=margin,
            test=test,
            confidence=confidence,
        )
        rows.append(dict(candidate=candidate, reference=reference, metric=metric, **result.as_dict()))
    return pd.DataFrame(rows)


__all__ = ["TESTS", "METRIC_BETTER", "NonInferiorityResult", "non_inferiority_test", "non_inferiority_table"]
