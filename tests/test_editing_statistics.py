"""Editing-metric comparisons: bootstrap intervals, permutation p-values, verdicts and the tidy table."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from benchmarks.statistics.paired import bootstrap_set_difference, comparison_table, paired_bootstrap, verdict


def planted(*, n: int = 40, effect: float = 0.1, sd: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0.3, 0.7, n)
    return reference + effect + rng.normal(0.0, sd, n), reference


def long_frame(spaces: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    rows = [
        dict(space=space, image_id=f"img{i:03d}", metric=metric, value=float(v))
        for space, metrics in spaces.items()
        for metric, values in metrics.items()
        for i, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_planted_difference_is_found_in_both_directions():
    c, r = planted()
    higher = paired_bootstrap(c, r, better="higher", metric="id_sim")
    assert higher.n == 40 and higher.n_missing == 0
    assert higher.ci_low < 0.1 < higher.ci_high
    assert higher.ci_low > 0
    assert higher.mean_improvement == pytest.approx(np.mean(c - r))
    assert higher.p_value < 0.01
    assert verdict(higher.ci_low, higher.ci_high) == "better"
    lower = paired_bootstrap(c, r, better="lower", metric="lpips")
    assert lower.mean_improvement == pytest.approx(-higher.mean_improvement)
    assert lower.ci_high < 0
    assert verdict(lower.ci_low, lower.ci_high) == "worse"


def test_no_difference_is_not_resolved():
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.3, 0.7, 40)
    noise = rng.normal(0.0, 0.05, 20)
    result = paired_bootstrap(reference + np.concatenate([noise, -noise]), reference, better="higher", seed=7)
    assert abs(result.mean_improvement) < 1e-12
    assert result.ci_low < 0 < result.ci_high
    assert verdict(result.ci_low, result.ci_high) == "not resolved"
    assert result.p_value > 0.05


def test_interval_coverage_of_a_planted_effect():
    covered = 0
    for rep in range(200):
        c, r = planted(n=30, effect=0.1, seed=1000 + rep)
        result = paired_bootstrap(c, r, better="higher", samples=500, seed=rep)
        covered += result.ci_low <= 0.1 <= result.ci_high
    assert 0.88 <= covered / 200 <= 0.99


def test_exact_permutation_p_values():
    d = np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    result = paired_bootstrap(d, np.zeros(5), better="higher")
    assert result.p_value == pytest.approx(2 / 32)
    mixed = np.array([0.3, -0.1, 0.25, 0.05, -0.2, 0.4])
    flipped = [abs(np.dot(s, mixed)) for s in itertools.product([-1, 1], repeat=6)]
    expected = np.mean(np.array(flipped) >= abs(mixed.sum()) - 1e-12)
    assert paired_bootstrap(np.zeros(6), -mixed, better="higher").p_value == pytest.approx(expected)
    assert paired_bootstrap(np.zeros(6), mixed, better="lower").p_value == pytest.approx(expected)


def test_random_permutation_p_value_is_bounded_and_seeded():
    c, r = planted(n=40)
    result = paired_bootstrap(c, r, better="higher", samples=999)
    assert result.p_value == pytest.approx(1 / 1000)  # no random flip reaches a 0.1 effect at sd 0.05
    same = paired_bootstrap(c, c + np.random.default_rng(5).normal(0, 0.05, 40), better="higher", samples=999)
    assert 1 / 1000 <= same.p_value <= 1


def test_same_seed_is_deterministic_and_seed_matters():
    c, r = planted(n=25, effect=0.02, sd=0.1, seed=4)
    first = paired_bootstrap(c, r, better="higher", seed=11)
    assert first == paired_bootstrap(c, r, better="higher", seed=11)
    other = paired_bootstrap(c, r, better="higher", seed=12)
    assert (other.ci_low, other.ci_high, other.p_value) != (first.ci_low, first.ci_high, first.p_value)
    assert first.as_dict()["seed"] == 11 and first.as_dict()["samples"] == 2000


def test_nan_pairs_are_dropped_and_too_few_pairs_raise():
    c, r = planted()
    c[[3, 10]] = np.nan
    r[20] = np.nan
    result = paired_bootstrap(c, r, better="higher")
    assert (result.n, result.n_missing) == (37, 3)
    keep = ~(np.isnan(c) | np.isnan(r))
    assert result.mean_candidate == pytest.approx(c[keep].mean())
    with pytest.raises(ValueError, match="lpips"):
        paired_bootstrap([0.1, np.nan], [0.2, 0.3], better="lower", metric="lpips")
    with pytest.raises(ValueError, match="better"):
        paired_bootstrap(c, r, better="up")
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0], better="higher")


def test_verdict_words():
    assert verdict(0.01, 0.2) == "better"
    assert verdict(-0.2, -0.01) == "worse"
    assert verdict(-0.1, 0.1) == "not resolved"
    assert verdict(0.01, 0.2, informative=False) == "uninformative"
    # an interval that excludes 0 is not enough when the test does not reject (few images: too narrow an interval)
    assert verdict(0.01, 0.2, p_value=0.0625, alpha=0.05) == "not resolved"
    assert verdict(-0.2, -0.01, p_value=0.01, alpha=0.05) == "worse"


def test_bootstrap_set_difference_covers_a_planted_offset():
    rng = np.random.default_rng(2)
    b = rng.normal(1.0, 0.2, 60)
    a = b + 0.3 + rng.normal(0.0, 0.05, 60)
    stat = lambda idx: float(a[idx].mean() - b[idx].mean())  # noqa: E731
    estimate, low, high, p = bootstrap_set_difference(stat, 60, samples=1000, seed=1)
    assert estimate == pytest.approx(np.mean(a - b))
    assert low < 0.3 < high and low > 0
    assert p == 0.0
    assert bootstrap_set_difference(stat, 60, samples=1000, seed=1) == (estimate, low, high, p)
    null = lambda idx: float(b[idx].mean() - b[::-1][idx].mean())  # noqa: E731
    assert bootstrap_set_difference(null, 60, samples=500)[3] > 0.05
    with pytest.raises(ValueError):
        bootstrap_set_difference(stat, 1)


def make_table_frame():
    c, r = planted(n=30, seed=8)
    w = r + np.random.default_rng(9).normal(0.0, 0.05, 30)
    return long_frame(
        {"fw": {"id_sim": c, "lpips": c}, "w+": {"id_sim": r, "lpips": r}, "w": {"id_sim": w, "lpips": w}}
    )


def test_comparison_table_rows_and_order_independence():
    frame = make_table_frame()
    metrics = {"id_sim": "higher", "lpips": "lower", "absent": "lower"}
    table = comparison_table(
        frame, [("fw", "w+"), ("w", "w+")], metrics, samples=300, informative={("w", "w+", "lpips"): False}
    )
    assert list(table.columns) == [
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
    ]
    assert len(table) == 4 and "absent" not in set(table["metric"])
    by_key = table.set_index(["candidate", "reference", "metric"])
    assert by_key.loc[("fw", "w+", "id_sim"), "verdict"] == "better"
    assert by_key.loc[("fw", "w+", "lpips"), "verdict"] == "worse"
    assert by_key.loc[("w", "w+", "lpips"), "verdict"] == "uninformative"
    shuffled = frame.sample(frac=1.0, random_state=0)
    reordered = comparison_table(
        shuffled,
        [("w", "w+"), ("fw", "w+")],
        dict(reversed(list(metrics.items()))),
        samples=300,
        informative={("w", "w+", "lpips"): False},
    )
    again = reordered.set_index(["candidate", "reference", "metric"]).loc[by_key.index]
    pd.testing.assert_frame_equal(again, by_key)
    rows_differ = by_key.loc[("fw", "w+", "id_sim"), "ci_low"] != by_key.loc[("w", "w+", "id_sim"), "ci_low"]
    assert rows_differ


def test_comparison_table_counts_unmatched_ids_and_rejects_duplicates():
    frame = make_table_frame()
    dropped = frame.drop(frame[(frame.space == "fw") & frame.image_id.isin(["img000", "img001"])].index)
    row = comparison_table(dropped, [("fw", "w+")], {"id_sim": "higher"}, samples=200).iloc[0]
    assert (row["n"], row["n_missing"]) == (28, 2)
    duplicated = pd.concat([frame, frame.iloc[[5]]])
    with pytest.raises(ValueError, match="img005"):
        comparison_table(duplicated, [("fw", "w+")], {"id_sim": "higher"})
    with pytest.raises(ValueError, match="nope"):
        comparison_table(frame, [("nope", "w+")], {"id_sim": "higher"})


def test_a_pair_with_fewer_than_two_complete_images_is_reported_not_resolved():
    import pandas as pd

    from benchmarks.statistics.paired import comparison_table

    frame = pd.DataFrame(dict(space=["A", "B"], image_id=["i0", "i0"], metric=["m", "m"], value=[0.1, 0.2]))
    row = comparison_table(frame, [("A", "B")], {"m": "lower"}).iloc[0]
    assert row.verdict == "not resolved" and row.n == 1 and np.isnan(row.ci_low) and row.mean_candidate == 0.1
