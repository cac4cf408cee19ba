"""Editing-metric comparisons: bootstrap intervals, permutation p-values, verdicts and the tidy table."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from benchmarks.statistics.paired import (
    bootstrap_set_difference,
    comparison_table,
    images_needed,
    paired_bootstrap,
    verdict,
)


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
    assert p == pytest.approx(2 / 1001)  # no bootstrap draw at or below 0: the (count + 1) / (samples + 1) floor
    assert bootstrap_set_difference(stat, 60, samples=1000, seed=1) == (estimate, low, high, p)
    # two images: however far apart, no smaller p than a sign-flip test over 2 images could give
    assert bootstrap_set_difference(lambda idx: 1.0 + float(np.mean(idx)), 2, samples=1000)[3] == 0.5
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
        "margin",
        "equivalence_p_value",
        "sd_improvement",
        "images_needed",
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


# ---- margins: "equivalent", differences too small to matter, images_needed ----------------------------------------


def margin_row(candidate, reference, *, better: str = "higher", margin: float, samples: int = 500, seed: int = 0):
    """The comparison_table row of one metric "m" between two value arrays, at the given margin."""
    frame = long_frame({"cand": {"m": candidate}, "ref": {"m": reference}})
    margins = {("cand", "ref", "m"): margin}
    return comparison_table(frame, [("cand", "ref")], {"m": better}, samples=samples, seed=seed, margins=margins).iloc[
        0
    ]


def planned_images(row, *, distance: float, alpha: float = 0.05) -> int:
    """The images_needed formula of benchmarks.statistics.paired, written out: ((z_{1-a/2} + z_0.8) sd / distance)^2."""
    from scipy.stats import norm

    return int(np.ceil(((norm.ppf(1 - alpha / 2) + norm.ppf(0.8)) * row.sd_improvement / distance) ** 2))


def test_a_planted_zero_difference_with_a_small_spread_is_equivalent():
    c, r = planted(n=40, effect=0.0, sd=0.005, seed=21)
    row = margin_row(c, r, margin=0.02)
    assert -0.02 <= row.ci_low and row.ci_high <= 0.02 and row.equivalence_p_value < 0.05
    assert row.verdict == "equivalent" and np.isnan(row.images_needed)
    assert row.sd_improvement == pytest.approx(np.std(c - r, ddof=1))
    # the margin decides it: without one nothing is equivalent, and a margin inside the interval is not enough
    assert margin_row(c, r, margin=0.0).verdict == "not resolved"
    assert margin_row(c, r, margin=row.ci_high / 2).verdict == "not resolved"
    # the equivalence p-value is two one-sided sign-flip tests; with 5 images its smallest value is 1/32 < 0.05,
    # with 4 it is 1/16, so 4 images are never "equivalent" however close
    assert margin_row(c[:5], c[:5] + 1e-4, margin=0.02).verdict == "equivalent"
    four = margin_row(c[:4], c[:4] + 1e-4, margin=0.02)
    assert four.verdict == "not resolved" and four.equivalence_p_value == pytest.approx(1 / 16)
    assert four.images_needed == 5


def test_a_planted_large_difference_is_better_or_worse():
    c, r = planted(n=40, effect=0.1, sd=0.05, seed=22)
    higher = margin_row(c, r, better="higher", margin=0.02)
    lower = margin_row(c, r, better="lower", margin=0.02)
    assert higher.mean_improvement > 0.02 and higher.ci_low > 0
    assert higher.verdict == "better" and lower.verdict == "worse"
    assert np.isnan(higher.images_needed) and np.isnan(lower.images_needed)
    # a margin twice the observed difference takes the word away: that difference does not matter, and its
    # interval lies inside the margins
    assert higher.ci_high < 2 * higher.mean_improvement
    assert margin_row(c, r, margin=2 * higher.mean_improvement).verdict == "equivalent"


def test_a_resolved_difference_smaller_than_the_margin_is_never_better_or_worse():
    rng = np.random.default_rng(23)
    for rep in range(10):
        c, r = planted(n=40, effect=0.01, sd=0.005, seed=300 + rep)
        for better in ("higher", "lower"):
            resolved = margin_row(c, r, better=better, margin=0.0, samples=300, seed=rep)
            assert resolved.verdict in ("better", "worse")  # the difference is resolved without a margin
            size = abs(resolved.mean_improvement)
            for margin in (size * 1.01, size * rng.uniform(1.1, 3.0), 0.05):
                row = margin_row(c, r, better=better, margin=margin, samples=300, seed=rep)
                assert row.verdict in ("equivalent", "not resolved")
                inside = -margin <= row.ci_low and row.ci_high <= margin
                assert (row.verdict == "equivalent") == (inside and row.equivalence_p_value < 0.05)
                if row.verdict == "not resolved":
                    # undecided between the two: the images to fit the interval inside the margins
                    assert row.images_needed == max(planned_images(row, distance=margin - size), 5)
    # the rule itself, on random intervals: a mean below the margin in size never gives better / worse
    for _ in range(2000):
        low, high = np.sort(rng.normal(0.0, 1.0, 2))
        mean, margin = rng.uniform(low, high), rng.uniform(0.0, 2.0)
        word = verdict(low, high, mean_improvement=mean, margin=margin, p_value=rng.uniform(0, 0.1))
        if abs(mean) < margin:
            assert word in ("equivalent", "not resolved")
        if word == "equivalent":
            assert -margin <= low and high <= margin


def test_a_wide_interval_is_not_resolved_and_says_how_many_images_would_decide_it():
    c, r = planted(n=20, effect=0.1, sd=0.6, seed=24)
    row = margin_row(c, r, margin=0.01)
    assert row.ci_low < 0 < row.ci_high and row.verdict == "not resolved"
    assert np.isfinite(row.images_needed) and row.images_needed > row.n
    assert row.images_needed == max(planned_images(row, distance=abs(row.mean_improvement)), 6)
    # the planned n is enough: at that many images the same effect and spread are resolved as "better"
    more_c, more_r = planted(n=int(row.images_needed) * 2, effect=0.1, sd=0.6, seed=25)
    assert margin_row(more_c, more_r, margin=0.01).verdict == "better"
    # undefined inputs give NaN, not a number
    assert np.isnan(images_needed(np.nan, 0.1, margin=0.01))
    assert np.isnan(images_needed(0.0, 0.1, margin=0.0))
    # few images: the sign-flip test cannot resolve anything below 6 images at alpha 0.05 (2/32 >= 0.05)
    assert images_needed(1.0, 1e-6, margin=0.0, sign_flip=True) == 6
    assert images_needed(1.0, 1e-6, margin=0.0) == 2
    # and never fewer than one more than the images that left it undecided, however small the spread
    assert images_needed(1.0, 1e-6, margin=0.0, images=12) == 13


def test_verdict_needs_a_mean_and_a_valid_margin():
    with pytest.raises(ValueError, match="mean_improvement"):
        verdict(0.01, 0.2, margin=0.05)
    with pytest.raises(ValueError, match="margin"):
        verdict(0.01, 0.2, mean_improvement=0.1, margin=np.nan)
    with pytest.raises(ValueError, match="margin"):
        paired_bootstrap([0.1, 0.2, 0.3], [0.0, 0.1, 0.2], better="higher", margin=-0.1)
    assert verdict(0.01, 0.2, mean_improvement=0.1, margin=0.05, informative=False) == "uninformative"


def realism_space(rng, *, shift: float) -> dict:
    ids = np.repeat([f"i{k}" for k in range(20)], 6)
    alpha = np.tile([0.0, 1.0, -1.0, 2.0, -2.0, 1.0], 20)
    return dict(features=rng.normal(size=(120, 8)) + shift, image_id=ids, alpha=alpha)


def test_verdict_table_margins_come_from_the_floor_to_ceiling_gap_of_each_metric():
    from scipy.stats import norm

    from benchmarks.statistics import editing

    rng = np.random.default_rng(26)
    reference = rng.normal(size=(200, 8))
    realism = {"A": realism_space(rng, shift=0.0), "B": realism_space(rng, shift=0.7)}
    ids = [f"i{k}" for k in range(20)]
    per_image = pd.DataFrame(
        [dict(space=s, image_id=i, metric="identity", value=0.5 + 0.1 * (s == "A")) for s in "AB" for i in ids]
    )
    estimate = editing.kid_difference(realism["A"], realism["B"], reference, samples=300)[0]
    assert estimate > 0  # A's edits are the realistic ones

    def table(*, kid_gap: float, fractions=None):
        flags = pd.DataFrame(
            [
                dict(metric=m, space=s, informative=True, best_floor_value=floor, ceiling_value=floor + gap)
                for m, floor, gap in (("identity", 0.2, 0.6), ("realism_kid", 1e-3, -kid_gap))
                for s in "AB"
            ]
        )
        frame = editing.verdict_table(
            per_image, realism, reference, flags, [("A", "B")], samples=300, metric_margin_fractions=fractions
        )
        return frame.set_index("metric")

    # a gap 10 times the difference: its 5 % margin is half the difference, which matters
    large = table(kid_gap=10 * estimate)
    kid_row = large.loc["realism_kid"]
    assert kid_row.floor_ceiling_gap == pytest.approx(10 * estimate) and kid_row.margin_fraction == 0.05
    assert kid_row.margin == pytest.approx(0.05 * 10 * estimate) and kid_row.verdict == "better"
    spread = (kid_row.ci_high - kid_row.ci_low) / (2 * norm.ppf(0.975)) * np.sqrt(kid_row.n)
    assert kid_row.sd_improvement == pytest.approx(spread) and np.isnan(kid_row.equivalence_p_value)
    assert large.loc["identity", "margin"] == pytest.approx(0.05 * 0.6)
    # the same difference against a gap 40 times as large (margin 2x the difference) is not better, and a
    # per-metric fraction replaces the default for that metric only
    small = table(kid_gap=40 * estimate)
    assert small.loc["realism_kid", "verdict"] in ("equivalent", "not resolved")
    assert small.loc["realism_kid", "margin"] == pytest.approx(2 * estimate)
    if small.loc["realism_kid", "verdict"] == "not resolved":
        assert np.isfinite(small.loc["realism_kid", "images_needed"])
    custom = table(kid_gap=40 * estimate, fractions={"realism_kid": 0.01})
    assert custom.loc["realism_kid", "margin"] == pytest.approx(0.01 * 40 * estimate)
    assert custom.loc["realism_kid", "verdict"] == "better"
    assert custom.loc["identity", "margin"] == pytest.approx(0.05 * 0.6)
    with pytest.raises(ValueError, match="realism_fid"):
        table(kid_gap=estimate, fractions={"realism_fid": 0.1})


def test_config_margins_name_editing_metrics_only():
    import yaml

    from benchmarks.statistics.editing import METRICS
    from fzplus.assets import REPO_ROOT
    from fzplus.config import ConfigError, load_config

    schema = yaml.safe_load((REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    equivalence = schema["properties"]["statistics"]["properties"]["equivalence"]
    assert set(equivalence["properties"]["metrics"]["properties"]) == set(METRICS)
    config = load_config("ci")
    assert config["statistics"]["equivalence"] == {"fraction": 0.05, "metrics": {}}
    custom = load_config("ci", overrides={"statistics.equivalence.metrics": {"realism_kid": 0.1}})
    assert custom["statistics"]["equivalence"]["metrics"] == {"realism_kid": 0.1}
    with pytest.raises(ConfigError, match=r"unknown key 'statistics\.equivalence\.metrics\.realism_fid'"):
        load_config("ci", overrides={"statistics.equivalence.metrics": {"realism_fid": 0.1}})
    with pytest.raises(ConfigError, match=r"statistics\.equivalence\.fraction must be <= 1"):
        load_config("ci", overrides={"statistics.equivalence.fraction": 5})


def test_a_margin_is_unknown_when_either_spaces_gap_is_unknown_whatever_the_pair_order():
    from benchmarks.statistics.editing import equivalence_margins

    flags = pd.DataFrame(
        [dict(metric="identity", space="A", best_floor_value=0.2, ceiling_value=0.8)]  # B has no gap for identity
    )
    for pair in (("A", "B"), ("B", "A")):
        row = equivalence_margins(flags, [pair]).set_index("metric").loc["identity"]
        assert np.isnan(row.floor_ceiling_gap) and row.margin == 0.0, pair
