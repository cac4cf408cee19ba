"""Ground-truth edit fidelity: every space's true codes render the generator's own sample, the fidelity of the
true codes is 0 at every alpha, and a perturbed inversion scores its own reconstruction error at alpha = 0
and a larger error under strong edits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import spaces
from benchmarks.pipeline import resized_perceptual
from conftest import make_tiny_generator
from fzplus.edits.directions import Directions
from fzplus.edits.ground_truth import edit_fidelity, ground_truth_samples, per_image_mse, true_code_gap, true_codes
from fzplus.inversion import edit, render
from spaces.base import SpaceContext, sample_ws

ALL_SPACES = ["Z", "Z+", "W", "W+", "W+(P_N)", "S", "F/Z", "F/Z+", "F/W", "F/W+", "F/W+(P_N)", "F/S"]
BASE = 8


@pytest.fixture(scope="module")
def samples():
    G = make_tiny_generator()
    ids, z, images = ground_truth_samples(G, count=3, seed=5)
    return G, ids, z, images


@pytest.fixture(scope="module")
def perceptual():
    """The pipeline's fast perceptual distance, upsampling the 32 px samples to 48 px as a profile would."""
    from fzplus.perceptual import build_perceptual

    return resized_perceptual(
        {"device": "cpu", "perceptual": {"size": 48}}, net=build_perceptual("stlpips-vgg"), fast=True
    )


def mse_distance(x, y):
    return torch.from_numpy(per_image_mse(x, y))


def directions(domain: str, seed: int = 0) -> dict[str, Directions]:
    vectors = torch.randn(2, 512, generator=torch.Generator().manual_seed(seed))
    vectors = vectors / vectors.norm(dim=1, keepdim=True) * (4.0 if domain == "Z" else 1.0)
    return {
        "random": Directions(
            vectors=vectors,
            domain=domain,
            names=("d0", "d1"),
            method="random",
            unit=False,
            diagnostics={"unit_rule": "test"},
        )
    }


def test_samples_are_seeded_and_named(samples):
    G, ids, z, images = samples
    again = ground_truth_samples(G, count=3, seed=5)
    assert ids == again[0] and torch.equal(z, again[1]) and torch.equal(images, again[2])
    assert len(set(ids)) == 3 and images.shape == (3, 3, 32, 32) and images.abs().max() <= 1
    with pytest.raises(ValueError, match="count >= 1"):
        ground_truth_samples(G, count=0, seed=5)


@pytest.mark.parametrize("name", ALL_SPACES)
def test_true_codes_render_the_sample(samples, name):
    G, _, z, images = samples
    space = spaces.get(name)
    truth = true_codes(space, z, G, base_size=BASE)
    ctx = SpaceContext(generator=G, base_size=BASE)
    ws = sample_ws(z, ctx)
    if space.uses_base_code:  # a bare f restarts the RGB skip at the split: the sample without its coarse RGB
        expected = G.synthesize_from(G.features(ws, at=BASE).f, ws)
        assert true_code_gap(truth, space, G, images).max() > 0
    else:
        expected = G.synthesize(ws)
        assert true_code_gap(truth, space, G, images).max() < 1e-9
    torch.testing.assert_close(render(truth, G, space), expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", ["Z+", "W+", "S", "F/Z+", "F/W+(P_N)"])
def test_fidelity_of_the_true_codes_is_zero_at_every_alpha(samples, name):
    G, ids, z, _ = samples
    space = spaces.get(name)
    truth = true_codes(space, z, G, base_size=BASE)
    table = edit_fidelity(
        {k: v.clone() for k, v in truth.items()},
        truth,
        space,
        G,
        directions(space.domain),
        image_ids=ids,
        distance=mse_distance,
        alphas=(-2.0, 0.0, 1.0, 2.0),
    )
    assert len(table) == 2 * 4 * 3 and set(table.columns) >= {
        "space",
        "family",
        "direction",
        "image_id",
        "alpha",
        "perceptual",
        "mse",
    }
    assert table.mse.max() == 0 and table.perceptual.max() == 0


def test_fidelity_of_a_perturbed_inversion_starts_at_its_reconstruction_error_and_grows_with_alpha(samples):
    G, ids, z, _ = samples
    space = spaces.get("W+")
    truth = true_codes(space, z, G, base_size=BASE)
    noise = torch.randn(truth["w"].shape, generator=torch.Generator().manual_seed(3))
    perturbed = {"w": truth["w"] + 0.3 * noise}
    alphas = (-3.0, -1.5, 0.0, 1.5, 3.0)
    table = edit_fidelity(
        perturbed, truth, space, G, directions("W"), image_ids=ids, distance=mse_distance, alphas=alphas
    )
    at_zero = table[table.alpha == 0].groupby("image_id").mse.first()
    expected = per_image_mse(render(perturbed, G, space).clamp(-1, 1), render(truth, G, space).clamp(-1, 1))
    np.testing.assert_allclose(at_zero.reindex(ids).to_numpy(), expected, rtol=1e-6)
    assert (at_zero > 0).all()
    by_size = table.assign(size=table.alpha.abs()).groupby("size").mse.mean()
    assert by_size[3.0] > by_size[1.5] > by_size[0.0]


@pytest.mark.parametrize("name", ["Z+", "W+", "F/W+(P_N)"])
def test_fidelity_rows_carry_the_size_of_the_true_edit(samples, name):
    G, ids, z, _ = samples
    space = spaces.get(name)
    truth = true_codes(space, z, G, base_size=BASE)
    alphas = (-2.0, 0.0, 1.0)
    table = edit_fidelity(
        {k: v + 0.1 for k, v in truth.items()},
        truth,
        space,
        G,
        directions(space.domain),
        image_ids=ids,
        distance=mse_distance,
        alphas=alphas,
    )
    unedited = table.alpha == 0
    assert (table.loc[unedited, ["true_edit_perceptual", "true_edit_mse"]] == 0).all().all()
    assert (table.loc[~unedited, ["true_edit_perceptual", "true_edit_mse"]] > 0).all().all()
    # the true edit against the true codes' own render, whatever the inversion
    edited = render(edit(truth, space, G, directions(space.domain)["random"].vectors[1], -2.0), G, space).clamp(-1, 1)
    expected = per_image_mse(edited, render(truth, G, space).clamp(-1, 1))
    row = table[(table.direction == "d1") & (table.alpha == -2.0)].set_index("image_id").reindex(ids)
    np.testing.assert_allclose(row.true_edit_mse.to_numpy(), expected, rtol=1e-5, atol=1e-12)


def test_fidelity_rejects_codes_of_different_samples(samples):
    G, ids, z, _ = samples
    space = spaces.get("W")
    truth = true_codes(space, z, G, base_size=BASE)
    with pytest.raises(ValueError, match="same samples"):
        edit_fidelity({"w": truth["w"][:2]}, truth, space, G, directions("W"), image_ids=ids, distance=mse_distance)


@pytest.mark.parametrize("fast", [True, False])
def test_resized_perceptual_between_features_is_its_distance(samples, perceptual, fast):
    G, _, _, images = samples
    distance = resized_perceptual({"device": "cpu", "perceptual": {"size": 48}}, net=perceptual.net, fast=fast)
    x, y = images, images.roll(1, dims=0)
    features = distance.features(x)
    assert features[0].shape[-1] == 48 and not features[0].requires_grad
    expected = distance(x, y)
    assert expected.shape == (3,) and (expected > 1e-3).all()
    torch.testing.assert_close(distance.between(features, distance.features(y)), expected, rtol=1e-5, atol=1e-7)


def test_fidelity_from_features_is_the_pairwise_distances_with_half_the_trunk_runs(samples, perceptual, monkeypatch):
    G, ids, z, _ = samples
    space = spaces.get("W+")
    truth = true_codes(space, z, G, base_size=BASE)
    noise = torch.randn(truth["w"].shape, generator=torch.Generator().manual_seed(4))
    inverted = {"w": truth["w"] + 0.2 * noise}
    net, trunk_images = perceptual.net, []
    features = net.features

    def counted(x, **kwargs):
        trunk_images.append(x.shape[0])
        return features(x, **kwargs)

    monkeypatch.setattr(net, "features", counted)
    tables = {}
    for path, distance in {"features": perceptual, "pairs": lambda x, y: perceptual(x, y)}.items():
        trunk_images.clear()
        tables[path] = edit_fidelity(
            inverted, truth, space, G, directions("W"), image_ids=ids, distance=distance, alphas=(-2.0, 0.0, 1.0)
        )
        tables[path + " trunk images"] = sum(trunk_images)
    pairs = (2 * 2 + 1) * 3  # (2 directions x 2 edits + the unedited) x 3 images
    assert tables["pairs trunk images"] == 4 * pairs
    assert tables["features trunk images"] == 2 * pairs + 3  # mine and right once each, the reference once
    fast, plain = tables["features"], tables["pairs"]
    perceptual_columns = ["perceptual", "true_edit_perceptual"]
    pd.testing.assert_frame_equal(fast.drop(columns=perceptual_columns), plain.drop(columns=perceptual_columns))
    assert (plain.perceptual > 1e-3).all() and (plain.true_edit_perceptual[plain.alpha != 0] > 1e-3).all()
    np.testing.assert_allclose(fast[perceptual_columns], plain[perceptual_columns], rtol=1e-5, atol=1e-7)
