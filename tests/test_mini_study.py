"""The mini study's validity on the committed mini generator: edit strengths matched across Z and W, a
well-posed P_N regulariser, and a W+(P_N) inversion that moves (issue: a mini study that measures the method)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
import yaml

import spaces
from fzplus.edits.calibration import calibrate_directions
from fzplus.edits.directions import find_directions
from fzplus.generator import load_generator
from fzplus.inversion import invert, load_targets
from fzplus.perceptual import build_perceptual
from fzplus.pn_stats import compute_pn_stats
from spaces.base import SpaceContext

ROOT = pathlib.Path(__file__).resolve().parents[1]
MINI = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())


@pytest.fixture(scope="module")
def mini_generator():
    return load_generator(ROOT / MINI["generator"]["checkpoint"]).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def stlpips():
    return build_perceptual("stlpips-vgg")


@pytest.fixture(scope="module")
def mini_pn_stats(mini_generator):
    return compute_pn_stats(mini_generator, num_samples=20_000, seed=0, progress=False)


def family_directions(G, family: str, domain: str):
    if family == "random":
        return find_directions("random", count=3, sigma=0.04, seed=0, domain=domain)
    if family == "ganspace":
        return find_directions(
            "ganspace", mapping=G.mapping, domain=domain, components=(1, 2, 3), num_samples=20_000, progress=False
        )
    from fzplus.edits.attributes import label_attributes

    z = torch.randn(600, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = torch.cat([G.synthesize(G.map(part)).clamp(-1, 1) for part in z.split(100)])
        codes = z if domain == "Z" else G.mapping(z)
    table = label_attributes(images, progress=False)
    attributes = ["smile", "mouth_open", "yaw"]
    return find_directions(
        "interfacegan",
        codes=codes,
        scores=table[attributes].to_numpy(np.float64),
        names=attributes,
        domain=domain,
        chosen=0.2,
        seed=0,
    )


@pytest.mark.parametrize("family", ["random", "ganspace", "interfacegan"])
def test_one_unit_of_alpha_moves_the_images_about_equally_in_z_and_w(mini_generator, stlpips, family):
    G = mini_generator
    distance = lambda x, y: stlpips(x, y)  # noqa: E731  (64 px: the profile's perceptual size)
    moved = {}
    for domain in ("Z", "W"):
        calibrated = calibrate_directions(
            family_directions(G, family, domain),
            generator=G,
            distance=distance,
            covariance_samples=20_000,
            num_images=16,
        )
        moved[domain] = np.mean(calibrated.diagnostics["image_distance_per_unit"])
        assert moved[domain] > 1e-4, (family, domain, moved)  # the edits move the images at all
    assert 0.5 <= moved["Z"] / moved["W"] <= 2.0, (family, moved)


def test_ganspace_steps_are_unit_in_z_and_one_w_std_in_w(mini_generator, stlpips):
    G = mini_generator
    steps = {}
    for domain in ("Z", "W"):
        found = family_directions(G, "ganspace", domain)
        calibrated = calibrate_directions(found, generator=G, distance=stlpips, covariance_samples=20_000, num_images=2)
        steps[domain] = (found, calibrated)
    z_found, z_steps = steps["Z"]
    np.testing.assert_allclose(z_steps.vectors.norm(dim=1), 1.0, rtol=1e-6)
    assert torch.equal(z_steps.vectors, z_found.vectors)  # Z: the authors' lat_stdev = 1
    w_found, w_steps = steps["W"]
    # the calibration's samples are the GANSpace fit's own (same seed and count): sqrt(lambda_k) exactly
    np.testing.assert_allclose(w_steps.vectors.norm(dim=1), w_found.diagnostics["coordinate_std"], rtol=1e-4)


def test_w_directions_without_a_unit_are_refused(tiny_generator):
    from fzplus.edits.protocol import step_vectors

    with pytest.raises(ValueError, match="calibrate_directions"):
        step_vectors(find_directions("random", count=1, domain="W"))
    assert len(step_vectors(find_directions("random", count=2, domain="Z"))) == 2


@pytest.mark.parametrize("name", ["W+(P_N)", "F/W+(P_N)"])
def test_pn_regulariser_at_the_start_is_on_the_scale_of_fresh_codes(mini_generator, mini_pn_stats, name):
    G, stats = mini_generator, mini_pn_stats
    space = spaces.get(name)
    ctx = SpaceContext(
        generator=G,
        base_size=8 if space.uses_base_code else None,
        pn_stats=stats,
        settings=space.settings_for({"lambda_pn": 1.0}),
    )
    codes = space.init_codes(torch.zeros(2, 3, 64, 64), ctx, image_seeds=[0, 1])
    with torch.no_grad():
        fresh = G.mapping(torch.randn(2048, G.z_dim, generator=torch.Generator().manual_seed(9)))
    fresh_mean = float(stats.regularizer(fresh).mean())
    at_start = space.regularizer(codes, ctx)
    assert 0.1 < fresh_mean < 2.0, fresh_mean
    assert float(at_start.max()) <= 10 * fresh_mean, (at_start, fresh_mean)
    # the variance floor alone makes w_avg (the W spaces' start) as cheap as a fresh code, within 10x;
    # without it w_avg whitens to ~1e4 on this generator
    assert float(stats.regularizer(G.w_avg)) <= 10 * fresh_mean
    summary = stats.summary(fresh_w=fresh, w_avg=G.w_avg)
    assert (
        summary["components_floored"] > 100
        and summary["condition_number_whitened"] <= 1 / stats.variance_floor * 1.0001
    )


def test_w_plus_pn_inversion_lowers_mse_by_30_percent_at_the_profiles_steps(
    mini_generator, mini_pn_stats, stlpips, mirror
):
    G = mini_generator
    paths = sorted((mirror / MINI["targets"]["asset"]).glob("*.jpg"))[:2]
    targets = load_targets(paths, resolution=G.resolution, crop=MINI["targets"]["crop"])
    inv = MINI["inversion"]
    result = invert(
        targets,
        G,
        "W+(P_N)",
        steps=inv["steps"],
        perceptual=stlpips,
        perceptual_size=MINI["perceptual"]["size"],
        pn_stats=mini_pn_stats,
        seed=0,
        progress=False,
    )
    mse = result.losses["mse"]  # [N, steps]
    assert bool((mse[:, -1] <= 0.7 * mse[:, 0]).all()), mse[:, [0, -1]]
