"""SAM and SAM w/ Z+ (spaces/_sam.py) and the landmark face parser (fzplus/faces/parsing.py): the selection
rule on planted maps, zero residuals are the pivot, edits keep the masked regions' features, the parser's
segments tile the image."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

import spaces
from conftest import make_tiny_generator
from fzplus.faces import parsing as face_parsing
from fzplus.faces.parsing import SEGMENTS, FaceSegments, draw_segments
from fzplus.inversion import edit, invert, render
from fzplus.settings import settings_from
from spaces._sam import SAMSettings, latent_masks, residual_synthesis, select_latents
from spaces.base import SpaceContext

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 32
SIZES = (8, 16)  # residuals of the tiny 32 px generator, finest first in the latent map: F16 = 0, F8 = 1, pivot = 2


def halves(images):
    """A planted parser: segment 0 is the top half of every image, segment 1 the bottom half."""
    n, size = images.shape[0], images.shape[-1]
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, size // 2 :] = 1
    return FaceSegments(labels, np.ones(n, dtype=bool))


if "test-halves" not in face_parsing.PARSERS:
    face_parsing.register_parser("test-halves", halves)


@pytest.fixture(scope="module")
def generator():
    return make_tiny_generator(resolution=SIZE)


@pytest.fixture(scope="module")
def targets():
    other = make_tiny_generator(resolution=SIZE, seed=1)
    with torch.no_grad():
        return other(torch.randn(2, 512, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


def test_selection_picks_the_last_candidate_at_or_below_tau_from_finest_to_pivot():
    segments = torch.zeros(1, 4, 4, dtype=torch.long)
    segments[0, 2:] = 1
    segments[0, :, 3] = 2
    # candidates finest first: [F_fine, F_mid, pivot]; per-segment planted means
    planted = {
        0: [0.1, 0.2, 0.5],  # pivot too far: F_mid (the last <= tau) wins
        1: [0.1, 0.5, 0.2],  # a gap in the middle: the pivot is the last <= tau
        2: [0.9, 0.8, 0.7],
    }  # none <= tau: the finest
    maps = torch.zeros(1, 3, 4, 4)
    for segment, values in planted.items():
        for k, v in enumerate(values):
            maps[0, k][segments[0] == segment] = v
    latent_map, means = select_latents(maps, segments, tau=0.25, segment_count=4)
    expected = torch.tensor([1, 2, 0])[segments[0]]
    assert torch.equal(latent_map[0], expected)
    assert torch.allclose(means[0, :, :3].T, torch.tensor(list(planted.values())))
    assert torch.isnan(means[0, :, 3]).all()  # an empty segment has no mean


def test_masks_are_binary_and_follow_the_map():
    latent_map = torch.zeros(1, 32, 32, dtype=torch.uint8)  # everywhere the finest (F16)
    latent_map[0, :16] = 1  # top half F8
    latent_map[0, :, :8] = 2  # left quarter the pivot
    masks = latent_masks(latent_map, SIZES)
    assert set(masks) == set(SIZES) and masks[8].shape == (1, 1, 8, 8) and masks[16].shape == (1, 1, 16, 16)
    assert set(masks[8].unique().tolist()) <= {0.0, 1.0}
    assert masks[8][0, 0, :4, 2:].all() and not masks[8][0, 0, 4:].any() and not masks[8][0, 0, :, :2].any()
    assert masks[16][0, 0, 8:, 4:].all() and not masks[16][0, 0, :8].any()


@pytest.mark.parametrize("pivot", ["W+", "Z+"])
def test_zero_residuals_render_the_pivot_exactly(generator, pivot):
    G = generator
    codes = spaces.get(pivot).codes_for_sample(
        torch.randn(2, 512, generator=torch.Generator().manual_seed(3)), SpaceContext(generator=G)
    )
    ws = spaces.get(pivot).generator_inputs(codes, SpaceContext(generator=G)).ws
    zeros = {r: torch.zeros(2, G.synthesis.channels[r], r, r) for r in SIZES}
    ones = {r: torch.ones(2, 1, r, r) for r in SIZES}
    with torch.no_grad():
        assert torch.equal(residual_synthesis(G, ws, zeros, ones)[0], G.synthesize(ws))


def sam_codes(name, generator, targets, *, steps=3, tau=0.5, pivot=None):
    settings = dict(residual_sizes=list(SIZES), steps=steps, tau=tau, parser="test-halves", lr=0.05)
    return invert(
        targets, generator, name, steps=2, perceptual=None, progress=False, method_settings=settings, pivot=pivot
    )


@pytest.mark.parametrize("name, pivot", [("SAM", "W+"), ("SAM w/ Z+", "Z+")])
def test_sam_starts_from_its_pivot_and_stores_what_it_chose(generator, targets, name, pivot):
    result = sam_codes(name, generator, targets)
    alone = invert(targets, generator, pivot, steps=2, perceptual=None, progress=False)
    codes, key = result.codes, spaces.get(pivot).variables[0]
    assert set(codes) == {key, "residuals", "residual_sizes", "latent_map", "segment_distances"}
    assert codes["residual_sizes"].tolist() == [list(SIZES)] * 2
    channels = generator.synthesis.channels
    assert codes["residuals"].shape == (2, sum(channels[r] * r * r for r in SIZES))
    assert codes["latent_map"].dtype == torch.uint8 and int(codes["latent_map"].max()) <= len(SIZES)
    assert codes["segment_distances"].shape == (2, len(SIZES) + 1, len(SEGMENTS))
    # the pivot's trace is the pivot row's own; the joint stage's steps follow it
    assert torch.equal(result.losses["total"][:, :2], alone.losses["total"])
    assert result.losses["total"].shape == (2, 2 + 3)
    if pivot == "Z+":
        assert torch.allclose(codes["z"].norm(dim=-1), torch.full((2, codes["z"].shape[1]), 512**0.5), atol=1e-3)
    # one latent per segment: the map is constant on each half (the planted parser)
    for image in codes["latent_map"]:
        assert image[: SIZE // 2].unique().numel() == 1 and image[SIZE // 2 :].unique().numel() == 1


@pytest.mark.parametrize("name, pivot", [("SAM", "W+"), ("SAM w/ Z+", "Z+")])
def test_sam_given_its_pivots_inversion_equals_sam_run_whole(generator, targets, name, pivot):
    whole = sam_codes(name, generator, targets)
    reused = sam_codes(
        name, generator, targets, pivot=invert(targets, generator, pivot, steps=2, perceptual=None, progress=False)
    )
    for key in whole.codes:  # segment_distances: NaN for the segments the planted parser has not
        assert torch.allclose(reused.codes[key], whole.codes[key], rtol=0, atol=0, equal_nan=True), key
    assert torch.equal(reused.losses["total"], whole.losses["total"])


def test_alpha_zero_edit_is_the_inversion_and_edits_keep_the_chosen_regions_features(generator, targets):
    result = sam_codes("SAM", generator, targets, tau=10.0)  # every segment can take the pivot ...
    codes = dict(result.codes)
    codes["latent_map"] = torch.zeros_like(codes["latent_map"])  # ... but plant F16 everywhere in the top half
    codes["latent_map"][:, SIZE // 2 :] = 2
    space = spaces.get("SAM")
    direction = torch.randn(512, generator=torch.Generator().manual_seed(5))
    same = render(edit(codes, space, generator, direction, 0.0), generator, space)
    assert torch.equal(same, render(codes, generator, space))
    moved = edit(codes, space, generator, direction, 3.0)
    ctx = SpaceContext(generator=generator)
    residuals, masks = space.unpack(moved, generator)
    ws_edit = space.generator_inputs(moved, ctx).ws
    ws_orig = space.generator_inputs(codes, ctx).ws
    kept = residual_synthesis(generator, ws_orig, residuals, masks)[1]
    edited = residual_synthesis(generator, ws_edit, residuals, masks, keep=kept)[1]
    top = masks[16].bool().expand_as(edited[16])
    assert top.any() and torch.equal(edited[16][top], kept[16][top])  # the top half keeps its unedited F16
    assert not torch.allclose(edited[16][~top], kept[16][~top])  # the rest follows the edit
    assert not torch.allclose(render(moved, generator, space), same)


def test_default_residual_sizes_are_sams_where_the_generator_has_them():
    from types import SimpleNamespace

    def fake(resolution):
        blocks = [2**i for i in range(2, resolution.bit_length())]
        return SimpleNamespace(resolution=resolution, synthesis=SimpleNamespace(block_resolutions=blocks))

    defaults = SAMSettings()
    assert defaults.sizes_for(fake(1024)) == (16, 32, 64, 128)  # SAM's own
    assert defaults.sizes_for(fake(64)) == (16, 32) and defaults.sizes_for(fake(16)) == (8,)
    assert settings_from(SAMSettings, what="inversion.sam", values={"residual_sizes": [32, 8]}).sizes_for(fake(64)) == (
        8,
        32,
    )


def test_unknown_settings_and_bad_sizes_are_refused(generator, targets):
    with pytest.raises(ValueError, match="unknown inversion.sam setting"):
        settings_from(SAMSettings, what="inversion.sam", values={"taux": 1})
    with pytest.raises(ValueError, match="residual sizes \\[32\\]"):
        spaces.get("SAM").residual_shapes(generator, [8, 32])
    with pytest.raises(KeyError, match="unknown face parser"):
        face_parsing.parse_faces(targets, parser="bisenet")


def test_drawn_segments_tile_the_image_with_every_part():
    # a synthetic frontal face: dlib's mean-shape landmarks, scaled into a 64 px frame
    rng = np.random.default_rng(0)
    jaw = np.stack([np.linspace(12, 52, 17), 30 + 22 * np.sin(np.linspace(0, np.pi, 17))], 1)
    brows = np.stack([np.r_[np.linspace(16, 28, 5), np.linspace(36, 48, 5)], np.full(10, 20.0)], 1)
    nose = np.stack(
        [np.r_[np.full(4, 32.0), np.linspace(27, 37, 5)], np.r_[np.linspace(24, 36, 4), np.full(5, 38.0)]], 1
    )
    eye = lambda cx: np.stack(
        [
            cx + 5 * np.cos(np.linspace(0, 2 * np.pi, 6, endpoint=False)),  # noqa: E731
            26 + 2.5 * np.sin(np.linspace(0, 2 * np.pi, 6, endpoint=False)),
        ],
        1,
    )
    mouth = np.stack(
        [
            32 + 9 * np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
            46 + 3 * np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
        ],
        1,
    )
    points = np.concatenate([jaw, brows, nose, eye(22), eye(42), mouth]) + rng.normal(0, 0.1, (68, 2))
    labels = draw_segments(points, 64)
    assert labels.shape == (64, 64) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(len(SEGMENTS)))  # one label per pixel, every part present
    assert labels[0, 0] == SEGMENTS.index("background_hair") and labels[46, 32] == SEGMENTS.index("mouth")
    assert labels[26, 22] == SEGMENTS.index("eyes_brows") and labels[33, 32] == SEGMENTS.index("nose")


def test_landmark_parser_on_generated_faces():
    from fzplus.generator import load_generator

    mini_generator = load_generator(ROOT / "models" / "mini" / "generator.pt").eval()
    mini_generator.noise_mode = "const"
    with torch.no_grad():
        faces = mini_generator(torch.randn(4, 512, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    parsed = face_parsing.parse_faces(faces)
    labels = parsed.labels
    assert labels.shape == (4, 64, 64) and labels.min() >= 0 and labels.max() < len(SEGMENTS)
    onehot = torch.nn.functional.one_hot(labels, len(SEGMENTS))
    assert torch.equal(onehot.sum(-1), torch.ones_like(labels))  # cover the image, no overlap
    for image, found in zip(labels, parsed.detected):
        if found:  # a detected face has every part, the face parts inside the image's middle
            assert set(image.unique().tolist()) == set(range(len(SEGMENTS)))
            ys, xs = (image == SEGMENTS.index("mouth")).nonzero(as_tuple=True)
            assert 32 <= ys.float().mean() <= 60 and 16 <= xs.float().mean() <= 48
    assert parsed.detected.sum() >= 2


def test_the_perceptual_map_is_where_the_distance_comes_from(targets):
    from fzplus.inversion.losses import ImageLosses
    from fzplus.perceptual import build_perceptual

    net = build_perceptual("stlpips-vgg")
    x = targets.flip(-1)  # a different image of the same statistics
    distance_map = net.distance_map(x, net.features(targets))
    assert distance_map.shape == (2, SIZE, SIZE) and (distance_map >= 0).all()
    whole = net.distance_to_features(x, net.features(targets))
    assert torch.allclose(
        distance_map.mean(dim=(1, 2)), whole, rtol=0.05
    )  # bilinear upsampling keeps the mean but at the edges
    changed = x.clone()
    changed[:, :, :, : SIZE // 2] = targets[:, :, :, : SIZE // 2]  # left half made identical to the target
    losses = ImageLosses(targets, net, SIZE)
    half = losses.maps(changed, torch.arange(2))
    assert half[:, :, : SIZE // 4].mean() < 0.2 * half[:, :, -SIZE // 4 :].mean()
