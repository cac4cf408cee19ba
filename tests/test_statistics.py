"""Non-inferiority tests: p-values and bounds against hand computations, for both metric directions."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from benchmarks.statistics.noninferiority import METRIC_BETTER, non_inferiority_table, non_inferiority_test


def paired_values(*, n: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0.01, 0.03, n)
    return reference + rng.normal(-0.0005, 0.002, n), reference


def hand_t(d: np.ndarray, margin: float, confidence: float):
    """t = (mean(d) + margin) / (sd(d) / sqrt(n)), p = P(T_{n-1} >= t); d = improvement of the candidate."""
    n = len(d)
    se = np.sqrt(np.sum((d - d.mean()) ** 2) / (n - 1)) / np.sqrt(n)
    t = (d.mean() + margin) / se
    return t, student_t.sf(t, n - 1), d.mean() - student_t.ppf(confidence, n - 1) * se


@pytest.mark.parametrize("better", ["lower", "higher"])
@pytest.mark.parametrize("margin", [1e-8, 1e-3])
def test_paired_t_matches_hand_computation(better, margin):
    candidate, reference = paired_values()
    result = non_inferiority_test(candidate, reference, better=better, margin=margin, confidence=0.9)
    d = (reference - candidate) if better == "lower" else (candidate - reference)
    t, p, improvement_bound = hand_t(d, margin, 0.9)
    assert result.test == "paired-t" and result.n == 50 and result.n_missing == 0
    assert result.statistic == pytest.approx(t, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.mean_difference == pytest.approx(np.mean(candidate - reference), rel=1e-12)
    if better == "lower":
        assert result.bound_side == "upper" and result.confidence_bound == pytest.approx(-improvement_bound, rel=1e-10)
        assert ">= +" in result.h0 and "< +" in result.h1
    else:
        assert result.bound_side == "lower" and result.confidence_bound == pytest.approx(improvement_bound, rel=1e-10)
        assert "<= -" in result.h0 and "> -" in result.h1
    # Decision and bound agree: non-inferior iff the bound clears the margin on the bad side.
    clears = result.confidence_bound < margin if better == "lower" else result.confidence_bound > -margin
    assert result.non_inferior == (result.p_value < 0.1) == clears


def test_margin_and_direction_change_the_verdict():
    # The candidate is worse on MSE by about 0.001 per image: inferior at a tiny margin, fine at 0.003.
    rng = np.random.default_rng(1)
    reference = rng.uniform(0.01, 0.03, 40)
    candidate = reference + 0.001 + rng.normal(0, 0.0005, 40)
    assert not non_inferiority_test(candidate, reference, better="lower", margin=1e-8).non_inferior
    assert non_inferiority_test(candidate, reference, better="lower", margin=0.003).non_inferior
    # The same numbers read as a higher-is-better metric make the candidate better.
    assert non_inferiority_test(candidate, reference, better="higher", margin=1e-8).non_inferior


def exact_signed_rank_p(x: np.ndarray) -> float:
    """P0(T+ >= observed) by enumerating all 2^n sign patterns (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(x))) + 1
    observed = ranks[x > 0].sum()
    signs = np.array(list(itertools.product([0, 1], repeat=len(x))))
    return float(np.mean(signs @ ranks >= observed))


def test_wilcoxon_p_value_and_hodges_lehmann_bound_by_enumeration():
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.6, 0.8, 12)
    candidate = reference + rng.normal(0.01, 0.02, 12)  # SSIM-like, higher is better
    margin = 0.005
    result = non_inferiority_test(
        candidate, reference, better="higher", margin=margin, test="wilcoxon", confidence=0.95
    )
    d = candidate - reference
    assert result.test == "wilcoxon"
    assert result.p_value == pytest.approx(exact_signed_rank_p(d + margin), rel=1e-9)
    ranks = np.argsort(np.argsort(np.abs(d + margin))) + 1
    assert result.statistic == ranks[d + margin > 0].sum()
    # The lower bound L inverts the test: shifts just below L are rejected at 5%, shifts just above are not.
    bound = result.confidence_bound
    assert exact_signed_rank_p(d - (bound - 1e-9)) <= 0.05 < exact_signed_rank_p(d - (bound + 1e-9))
    lower = non_inferiority_test(-candidate, -reference, better="lower", margin=margin, test="wilcoxon")
    assert lower.p_value == pytest.approx(result.p_value) and lower.confidence_bound == pytest.approx(-bound)


def test_input_errors_and_missing_values():
    candidate, reference = paired_values(n=10)
    candidate[3] = np.nan
    result = non_inferiority_test(candidate, reference, better="lower")
    assert result.n == 9 and result.n_missing == 1
    with pytest.raises(ValueError, match="better"):
        non_inferiority_test(candidate, reference, better="smaller")
    with pytest.raises(ValueError, match="test must be"):
        non_inferiority_test(candidate, reference, better="lower", test="sign")
    with pytest.raises(ValueError, match="paired"):
        non_inferiority_test(candidate, reference[:5], better="lower")


def long_frame():
    rng = np.random.default_rng(5)
    rows = []
    for image in range(20):
        base_mse, base_ssim = rng.uniform(0.01, 0.03), rng.uniform(0.6, 0.8)
        for space, shift in (("F/Z+", 0.0), ("F/W+(P_N)", 0.001), ("W+", 0.01)):
            rows.append(
                dict(
                    space=space,
                    image=f"{image:06d}.jpg",
                    mse=base_mse + shift + rng.normal(0, 5e-4),
                    ssim=base_ssim - 10 * shift + rng.normal(0, 5e-3),
                )
            )
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # pairing must not rely on row order


def test_table_pairs_images_and_matches_single_tests():
    frame = long_frame()
    table = non_inferiority_table(
        frame, [("F/Z+", "F/W+(P_N)", "mse"), ("F/Z+", "F/W+(P_N)", "ssim"), ("W+", "F/Z+", "mse")], margin=1e-8
    )
    assert list(table.metric) == ["mse", "ssim", "mse"] and list(table.better) == ["lower", "higher", "lower"]
    by_image = frame.set_index(["space", "image"]).sort_index()
    c, r = by_image.loc["F/Z+", "ssim"], by_image.loc["F/W+(P_N)", "ssim"]
    direct = non_inferiority_test(c.to_numpy(), r.loc[c.index].to_numpy(), better="higher", margin=1e-8)
    assert table.iloc[1].p_value == pytest.approx(direct.p_value) and table.iloc[1].n == 20
    assert table.iloc[0].non_inferior and table.iloc[1].non_inferior and not table.iloc[2].non_inferior


def test_table_errors_name_the_problem():
    frame = long_frame()
    with pytest.raises(ValueError, match="not in both"):
        non_inferiority_table(
            frame[~((frame.space == "F/Z+") & (frame.image == "000003.jpg"))], [("F/Z+", "F/W+(P_N)", "mse")]
        )
    with pytest.raises(ValueError, match="repeated"):
        non_inferiority_table(pd.concat([frame, frame.iloc[:1]]), [("F/Z+", "F/W+(P_N)", "mse")])
    with pytest.raises(ValueError, match="no rows for space 'Z'"):
        non_inferiority_table(frame, [("Z", "F/W+(P_N)", "mse")])
    with pytest.raises(KeyError, match="lower or higher"):
        non_inferiority_table(frame.assign(fid=1.0), [("F/Z+", "F/W+(P_N)", "fid")])
    table = non_inferiority_table(frame.assign(fid=frame.mse), [("F/Z+", "F/W+(P_N)", "fid")], better={"fid": "lower"})
    assert table.iloc[0].better == "lower"


def test_every_metric_the_config_allows_has_a_direction():
    """statistics.metrics in a profile must never reach the 'is lower or higher better?' error."""
    import yaml

    from fzplus.assets import REPO_ROOT

    schema = yaml.safe_load((REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    allowed = schema["properties"]["statistics"]["properties"]["metrics"]["items"]["enum"]
    assert set(allowed) <= set(METRIC_BETTER) and METRIC_BETTER["perceptual"] == "lower"
