"""Editing metrics from planted sweeps: undetected faces score the floor, identity at a matched attribute change
(a space whose edits change nothing scores the floor and cannot win), KID differences with a paired bootstrap,
and the verdict table's use of the informative flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.statistics import editing

FLOOR = 0.80
ALPHAS = (-2.0, -1.0, 0.0, 1.0, 2.0)


def planted_sweep(
    *, strength: dict[str, float], identity_drop: dict[str, float], images=("a", "b", "c", "d")
) -> pd.DataFrame:
    """InterFaceGAN smile edits: attribute score 1 + strength * alpha, identity 0.95 - drop * |alpha|."""
    rows = []
    for space in strength:
        for k, image_id in enumerate(images):
            for alpha in ALPHAS:
                rows.append(
                    dict(
                        space=space,
                        family="interfacegan",
                        direction="smile",
                        image_id=image_id,
                        alpha=alpha,
                        similarity=0.95 - identity_drop[space] * abs(alpha) - 0.001 * k,
                        distance=0.0,
                        target_detected=True,
                        edited_detected=True,
                        attribute_score=1.0 + strength[space] * alpha,
                    )
                )
    return pd.DataFrame(rows)


def test_undetected_edits_score_the_floor():
    frame = pd.DataFrame(dict(similarity=[0.9, 0.95, 0.99], edited_detected=[True, False, True]))
    np.testing.assert_array_equal(editing.scored_similarity(frame, floor=FLOOR), [0.9, FLOOR, 0.99])
    baselines = pd.DataFrame(
        dict(
            metric="identity",
            reference=["other", "other", "gray"],
            kind="floor",
            image_id=["a", "b", "a"],
            value=[0.7, 0.9, 0.1],
        )
    )
    assert editing.identity_floor(baselines) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="editing_references"):
        editing.identity_floor(baselines[baselines.reference == "gray"])


def test_achieved_change_follows_the_direction_sign():
    sweep = planted_sweep(strength={"A": 0.1}, identity_drop={"A": 0.01})
    changes = editing.attribute_changes(sweep, floor=FLOOR)
    np.testing.assert_allclose(changes.change, 0.1 * changes.alpha.abs())
    wrong_way = sweep.assign(attribute_score=1.0 - 0.1 * sweep.alpha)
    assert (editing.attribute_changes(wrong_way, floor=FLOOR).query("alpha != 0").change < 0).all()


def test_identity_at_matched_change_interpolates_and_a_space_that_changes_nothing_scores_the_floor():
    sweep = planted_sweep(
        strength={"strong": 0.2, "weak": 0.1, "none": 0.0}, identity_drop={"strong": 0.02, "weak": 0.01, "none": 0.0}
    )
    changes = editing.attribute_changes(sweep, floor=FLOOR)
    levels = editing.matched_levels(changes, at_alpha=1.0)
    assert levels == {"smile": pytest.approx(0.1)}  # median of 0.2, 0.1, 0.0 at |alpha| = 1
    matched = editing.identity_at_levels(changes, levels, floor=FLOOR)
    by_space = matched.groupby("space").agg(reached=("reached", "mean"), similarity=("similarity", "mean"))
    # strong reaches 0.1 at |alpha| = 0.5: identity 0.95 - 0.02 * 0.5; weak at |alpha| = 1: 0.95 - 0.01
    assert by_space.loc["strong", "similarity"] == pytest.approx(0.95 - 0.01 - 0.0015, abs=1e-9)
    assert by_space.loc["weak", "similarity"] == pytest.approx(0.95 - 0.01 - 0.0015, abs=1e-9)
    assert by_space.loc["none", "reached"] == 0 and by_space.loc["none", "similarity"] == FLOOR
    # without matching, the space that changes nothing has the best identity; matched, it has the worst
    per_image = editing.per_image_metrics(
        sweep, pd.DataFrame(columns=["space", "image_id", "alpha", "perceptual", "mse"]), matched, floor=FLOOR
    )
    means = per_image.groupby(["metric", "space"]).value.mean()
    assert means["identity"].idxmax() == "none" and means["identity_matched"].idxmin() == "none"


def test_kid_difference_finds_the_more_realistic_space():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 8))

    def space(shift: float) -> dict:
        ids = np.repeat([f"i{k}" for k in range(20)], 6)
        alpha = np.tile([0.0, 1.0, -1.0, 2.0, -2.0, 1.0], 20)
        return dict(features=rng.normal(size=(120, 8)) + shift, image_id=ids, alpha=alpha)

    realistic, shifted = space(0.0), space(0.7)
    estimate, low, high, p = editing.kid_difference(realistic, shifted, reference, samples=300, seed=1)
    assert estimate > 0 and low > 0 and p < 0.05
    estimate, low, high, _ = editing.kid_difference(shifted, realistic, reference, samples=300, seed=1)
    assert estimate < 0 and high < 0
    kids = editing.kid_by_alpha({"realistic": realistic, "shifted": shifted}, reference)
    assert set(kids.abs_alpha) == {0.0, 1.0, 2.0}
    assert (kids[kids.space == "shifted"].kid.to_numpy() > kids[kids.space == "realistic"].kid.to_numpy()).all()


def test_verdicts_only_from_informative_metrics():
    rng = np.random.default_rng(2)
    ids = [f"i{k}" for k in range(12)]
    per_image = pd.concat(
        [
            pd.DataFrame(dict(space=s, image_id=ids, metric=m, value=base + rng.normal(0, 0.01, 12)))
            for s, base in (("A", 0.9), ("B", 0.8))
            for m in ("identity", "fidelity_mse")
        ],
        ignore_index=True,
    )
    flags = pd.DataFrame(
        [dict(metric=m, space=s, informative=(m == "identity")) for m in ("identity", "fidelity_mse") for s in "AB"]
    )
    table = editing.verdict_table(per_image, {}, np.zeros((2, 2)), flags, [("A", "B")], samples=200).set_index("metric")
    assert table.loc["identity", "verdict"] == "better"  # higher identity is better
    assert table.loc["fidelity_mse", "verdict"] == "uninformative"  # A is worse here, but the metric was flagged
    assert table.loc["identity", "ci_low"] > 0
