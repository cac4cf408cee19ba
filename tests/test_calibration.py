"""The "matched" unit of alpha (fzplus.edits.calibration): the scale search, the pairing of W directions with
their Z namesakes, the error for a W direction that cannot be matched, and, on the committed mini generator,
W edits that move held-out images as far per unit as the Z edits of the same family (issue 31)."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch
import yaml

from fzplus.edits.calibration import (
    MATCH_MAX_SCALE,
    calibrate_directions,
    match_scales,
    matched_steps,
)
from fzplus.edits.directions import Directions, find_directions
from fzplus.generator import load_generator
from fzplus.perceptual import build_perceptual

ROOT = pathlib.Path(__file__).resolve().parents[1]
MINI = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())


def unit_directions(domain: str, names=("a", "b"), *, method: str = "interfacegan", dim: int = 8) -> Directions:
    vectors = torch.eye(dim)[: len(names)]
    return Directions(vectors=vectors, domain=domain, names=names, method=method, unit=True)


@pytest.mark.parametrize(
    "move",
    [
        lambda scale: 0.01 * scale,  # linear: the first estimate is exact
        lambda scale: 0.002 * scale**2.5,  # the image distance ignores tiny steps, then grows fast
        lambda scale: 0.3 * (1 - math.exp(-scale / 20)),  # saturating, but the target is within reach
    ],
)
def test_match_scales_finds_the_scale_within_the_tolerance_in_a_few_measurements(move):
    targets = np.array([0.02, 0.005, 0.1])
    found = match_scales(
        lambda rows, scales: np.array([move(s) for s in scales]), targets, tolerance=0.05, max_scale=MATCH_MAX_SCALE
    )
    assert found["matched"].all()
    np.testing.assert_allclose(found["move"], targets, rtol=0.05)
    np.testing.assert_allclose([move(s) for s in found["scale"]], found["move"])
    assert found["iterations"].max() <= 8, found


def test_match_scales_reports_a_move_that_saturates_below_the_target():
    found = match_scales(
        lambda rows, scales: np.where(rows == 0, 0.01 * scales, 0.004 * (1 - np.exp(-scales))),
        np.array([0.02, 0.02]),
        max_scale=50.0,
    )
    assert found["matched"].tolist() == [True, False]
    assert found["scale"][1] == pytest.approx(50.0)  # the cap was tried, and came closest
    assert found["move"][1] < 0.005


def fake_measure(*, z_moves: dict[str, float], w_move):
    """measure(steps, domain=) -> moves: Z directions by their (one-hot) position, W by w_move(step norm)."""

    def measure(steps: torch.Tensor, *, domain: str) -> np.ndarray:
        if domain == "Z":
            return np.array([z_moves[int(step.argmax())] for step in steps])
        return np.array([w_move(float(step.norm())) for step in steps])

    return measure


def test_w_directions_are_matched_to_their_z_namesakes_in_any_order():
    w = unit_directions("W", names=("smile", "yaw"))
    z = Directions(
        vectors=torch.eye(8)[[1, 0]], domain="Z", names=("yaw", "smile"), method="interfacegan-released", unit=True
    )  # released Z boundaries, listed in another order: smile is Z's second row, one-hot at position 0
    start = w.vectors * 0.5
    steps, diagnostics = matched_steps(
        w, start, reference=z, measure=fake_measure(z_moves={0: 0.02, 1: 0.08}, w_move=lambda norm: 0.01 * norm)
    )
    np.testing.assert_allclose(diagnostics["matched_reference"], [0.02, 0.08])
    np.testing.assert_allclose(diagnostics["matched_scale"], [4.0, 16.0], rtol=1e-5)
    np.testing.assert_allclose(steps.norm(dim=1), [2.0, 8.0], rtol=1e-5)
    assert diagnostics["matched_iterations"] == [2, 2]  # the domain-std step, then the (exact) linear estimate


def test_a_w_direction_that_cannot_reach_its_z_move_is_an_error_naming_it():
    w, z = unit_directions("W", names=("smile", "mouth_open")), unit_directions("Z", names=("smile", "mouth_open"))
    measure = fake_measure(z_moves={0: 0.02, 1: 0.02}, w_move=lambda norm: 0.001 * (1 - math.exp(-norm)))
    with pytest.raises(ValueError, match=r"W interfacegan directions .*'smile'.*'mouth_open'.*saturates"):
        matched_steps(w, w.vectors, reference=z, measure=measure)


def test_matching_refuses_w_directions_without_a_z_namesake():
    w = unit_directions("W", names=("smile", "Young"))
    measure = fake_measure(z_moves={0: 0.02}, w_move=lambda norm: norm)
    with pytest.raises(ValueError, match=r"\['Young'\] have no Z direction of the same name"):
        matched_steps(w, w.vectors, reference=unit_directions("Z", names=("smile", "Male")), measure=measure)
    with pytest.raises(ValueError, match="needs the Z interfacegan directions"):
        matched_steps(w, w.vectors, reference=None, measure=measure)
    with pytest.raises(ValueError, match="needs the Z interfacegan directions"):
        matched_steps(w, w.vectors, reference=unit_directions("Z", method="ganspace"), measure=measure)


@pytest.fixture(scope="module")
def mini_generator():
    return load_generator(ROOT / MINI["generator"]["checkpoint"]).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def mini_families(mini_generator):
    """{family: {domain: Directions}} fitted as the mini profile fits them, at small sample counts."""
    from fzplus.edits.attributes import label_attributes

    G = mini_generator
    z = torch.randn(400, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = torch.cat([G.synthesize(G.map(part)).clamp(-1, 1) for part in z.split(100)])
        codes = dict(Z=z, W=G.mapping(z))
    attributes = MINI["directions"]["interfacegan"]["attributes"]
    scores = label_attributes(images, progress=False)[attributes].to_numpy(np.float64)
    found = {}
    for domain in ("Z", "W"):
        found.setdefault("random", {})[domain] = find_directions(
            "random", count=2, sigma=MINI["directions"]["random"]["sigma"], seed=0, domain=domain
        )
        found.setdefault("ganspace", {})[domain] = find_directions(
            "ganspace", mapping=G.mapping, domain=domain, components=(1, 2), num_samples=10_000, progress=False
        )
        found.setdefault("interfacegan", {})[domain] = find_directions(
            "interfacegan", codes=codes[domain], scores=scores, names=attributes, domain=domain, chosen=0.2, seed=0
        )
    return found


@pytest.mark.parametrize("family", ["random", "ganspace", "interfacegan"])
def test_matched_w_directions_move_held_out_images_as_far_as_z_on_the_mini_generator(
    mini_generator, mini_families, family
):
    stlpips = build_perceptual("stlpips-vgg")  # 64 px: the mini profile's perceptual size, no resize
    settings = dict(
        generator=mini_generator, distance=stlpips, rule="matched", covariance_samples=10_000, num_images=16
    )
    z = calibrate_directions(mini_families[family]["Z"], **settings)
    assert torch.equal(z.vectors, mini_families[family]["Z"].vectors)  # Z keeps the authors' unit
    w = calibrate_directions(mini_families[family]["W"], reference=z, **settings)
    assert w.diagnostics["unit_rule"] == "matched" and len(w.diagnostics["matched_scale"]) == len(w)
    np.testing.assert_allclose(w.diagnostics["matched_fit_distance"], w.diagnostics["matched_reference"], rtol=0.05)
    held_out = np.array(z.diagnostics["image_distance_per_unit"]) / np.array(w.diagnostics["image_distance_per_unit"])
    # 16 held-out images: a W edit moves them 0.4-2.5x what the Z edit does, image by image (mini run), so the
    # ratio of means strays up to ~20 % from the fit's; 1.5 still catches the 20-100x of the domain-std unit
    assert ((held_out > 1 / 1.5) & (held_out < 1.5)).all(), dict(zip(w.names, held_out.round(3)))
