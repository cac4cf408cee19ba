"""Metric floors and ceilings: reference images, and the flag on metrics that cannot tell a face from gray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from benchmarks.metrics.identity import IdentityBackend, identity_similarity
from benchmarks.metrics.sanity import (
    REFERENCES,
    derangement,
    informative_check,
    reference_images,
    reference_scores,
    set_metric_informative,
)

N, R = 12, 32
IDS = [f"img{i:02d}" for i in range(N)]


def toy_faces(*, n: int = N, seed: int = 0) -> torch.Tensor:
    """Smooth, nearly left-right symmetric random images (blurred noise) with detail finer than 8x8, so that
    the mirror is close, the heavy blur is not, and every image differs from every other."""
    g = torch.Generator().manual_seed(seed)
    up = lambda x: F.interpolate(x, size=(R, R), mode="bicubic", align_corners=False)  # noqa: E731
    base = up(torch.randn(n, 3, 4, 4, generator=g)) * 0.4
    detail = up(torch.randn(n, 3, 16, 16, generator=g)) * 0.3
    return ((base + base.flip(3)) / 2 + (detail + detail.flip(3)) / 2 + 0.05 * detail).clamp(-1, 1)


def toy_recon(images: torch.Tensor, *, seed: int = 1) -> torch.Tensor:
    """A good reconstruction: a small per-image brightness shift plus pixel noise."""
    g = torch.Generator().manual_seed(seed)
    shift = 0.05 * torch.randn(len(images), 3, 1, 1, generator=g)
    return (images + shift + 0.02 * torch.randn(images.shape, generator=g)).clamp(-1, 1)


def mse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return ((a - b) ** 2).flatten(1).mean(1).double().numpy()


class BrightnessBackend(IdentityBackend):
    """Identity-like backend whose embedding is a constant plus a little mean colour: a gray image, another
    person and the reconstruction all get a cosine of about 1, as with a detector that finds a face anywhere."""

    name, on_undetected = "toy-brightness", "full-frame"

    def embed(self, images):
        x = torch.as_tensor(images).double()
        return torch.cat([torch.ones(len(x), 1, dtype=torch.float64), 0.2 * x.mean((2, 3))], 1).numpy(), np.ones(
            len(x), bool
        )


class PixelBackend(IdentityBackend):
    """Identity-like backend whose embedding is the pixels (scaled so that distance**2 is the MSE)."""

    name, on_undetected = "toy-pixels", "full-frame"

    def embed(self, images):
        x = torch.as_tensor(images).double().flatten(1)
        return torch.cat([x / np.sqrt(x.shape[1]), torch.ones(len(x), 1, dtype=torch.float64)], 1).numpy(), np.ones(
            len(x), bool
        )


def test_reference_shapes_ranges_and_determinism():
    images = toy_faces()
    refs = reference_images(images, seed=3)
    assert set(refs) == set(REFERENCES)
    for name, ref in refs.items():
        assert ref.shape == images.shape and ref.dtype == torch.float32, name
        assert float(ref.min()) >= -1 and float(ref.max()) <= 1, name
    again, other_seed = reference_images(images, seed=3), reference_images(images, seed=4)
    assert all(torch.equal(refs[name], again[name]) for name in REFERENCES)
    assert not torch.equal(refs["noise"], other_seed["noise"]) and not torch.equal(refs["other"], other_seed["other"])
    assert torch.equal(refs["gray"], torch.zeros_like(images))
    assert float(refs["noise"].min()) < -0.99 and float(refs["noise"].max()) > 0.99


def test_other_never_pairs_an_image_with_itself():
    images = toy_faces()
    for seed in range(20):
        perm = derangement(N, seed=seed)
        assert sorted(perm) == list(range(N)) and np.all(perm != np.arange(N))
        other = reference_images(images, seed=seed, names=["other"])["other"]
        assert torch.equal(other, images[perm])
        assert all(not torch.equal(other[i], images[i]) for i in range(N))
    assert np.all(derangement(2, seed=0) == [1, 0])
    with pytest.raises(ValueError, match="other"):
        reference_images(images[:1])
    assert set(reference_images(images[:1], names=["gray", "mirror"])) == {"gray", "mirror"}
    with pytest.raises(ValueError, match="unknown"):
        reference_images(images, names=["sepia"])


def test_jpeg_close_but_not_equal_mirror_is_flip_blur_loses_detail():
    images = toy_faces()
    refs = reference_images(images)
    jpeg_error = mse(images, refs["jpeg"])
    assert np.all(jpeg_error > 1e-5) and np.all(jpeg_error < 0.05)
    assert torch.equal(refs["mirror"], torch.flip(images, dims=[3]))
    blur_error = mse(images, refs["blur"])
    assert np.all(blur_error > jpeg_error) and np.all(blur_error < mse(images, refs["gray"]))
    # the blur keeps the colour layout: per-channel means survive
    assert torch.allclose(refs["blur"].mean((2, 3)), images.mean((2, 3)), atol=0.02)


def test_reference_scores_frame():
    images = toy_faces()
    table = reference_scores(mse, images, image_ids=IDS, seed=0)
    assert list(table.columns) == ["reference", "kind", "image_id", "value"] and len(table) == N * len(REFERENCES)
    assert dict(table.drop_duplicates("reference")[["reference", "kind"]].values) == REFERENCES
    mirror = table[table.reference == "mirror"].set_index("image_id").value
    np.testing.assert_allclose(mirror.loc[IDS].to_numpy(), mse(images, images.flip(3)))
    with pytest.raises(ValueError, match="one value per image"):
        reference_scores(lambda a, b: mse(a, b)[:-1], images, image_ids=IDS)
    with pytest.raises(ValueError, match="distinct"):
        reference_scores(mse, images, image_ids=IDS[:-1] + IDS[:1])


def identity_scorer(backend, column, transform=lambda v: v):
    return lambda targets, edited: transform(identity_similarity(backend, targets, edited)[column].to_numpy())


def test_identity_like_backend_that_scores_gray_like_a_face_is_flagged():
    images, recon = toy_faces(), toy_recon(toy_faces())
    score = identity_scorer(BrightnessBackend(), "similarity")
    table = reference_scores(score, images, image_ids=IDS)
    recon_values = score(images, recon)
    gray = table[table.reference == "gray"].value
    assert abs(gray.median() - np.median(recon_values)) < 1e-3  # gray "looks like" the person
    check = informative_check(recon_values, table, better="higher")
    assert check["informative"] is False and "floor" in check["reason"]
    assert check["best_floor"] in ("blur", "gray", "other", "noise")


def test_pixel_backend_that_sees_the_face_is_passed():
    images, recon = toy_faces(), toy_recon(toy_faces())
    score = identity_scorer(PixelBackend(), "distance", lambda d: np.exp(-5.0 * d**2))
    table = reference_scores(score, images, image_ids=IDS)
    check = informative_check(pd.Series(score(images, recon), index=IDS), table, better="higher")
    assert check["informative"] is True, check["reason"]
    assert check["reason"] == "reconstructions score clearly above the floor"
    assert check["best_floor"] == "blur" and check["sign_test_p"] == pytest.approx(0.5**N)
    assert check["recon_median"] > check["best_floor_median"] and check["separation"] >= 0.25


def test_lower_is_better_orientation_and_original_units():
    images, recon = toy_faces(), toy_recon(toy_faces())
    table = reference_scores(mse, images, image_ids=IDS)
    recon_values = mse(images, recon)
    check = informative_check(recon_values, table, better="lower")
    assert check["informative"] is True, check["reason"]
    assert check["recon_median"] == pytest.approx(np.median(recon_values))
    assert check["best_floor_median"] == pytest.approx(table[table.reference == check["best_floor"]].value.median())
    assert check["ceiling_median"] < check["best_floor_median"]  # original units: the ceiling has the lower MSE
    assert informative_check(recon_values, table, better="higher")["informative"] is False
    with pytest.raises(ValueError, match="better"):
        informative_check(recon_values, table, better="up")


def hand_frame(n: int = 10) -> pd.DataFrame:
    ids = [f"i{k}" for k in range(n)]
    return pd.DataFrame(
        dict(
            reference=["f"] * n + ["c"] * n,
            kind=["floor"] * n + ["ceiling"] * n,
            image_id=ids * 2,
            value=[0.5] * n + [1.0] * n,
        )
    )


def test_each_condition_can_fail_and_nans_are_dropped():
    table = hand_frame()
    assert informative_check(np.full(10, 0.9), table, better="higher")["informative"] is True
    small = informative_check(np.full(10, 0.55), table, better="higher")
    assert small["informative"] is False and small["separation"] == pytest.approx(0.1) and "0.10" in small["reason"]
    mixed = informative_check(np.array([0.9] * 6 + [0.4] * 4), table, better="higher")
    assert mixed["informative"] is False and "sign test" in mixed["reason"]
    assert mixed["sign_test_p"] == pytest.approx(386 / 1024)  # P(X >= 6), X ~ Bin(10, 1/2)
    flat = table.assign(value=0.5)
    assert "ceiling" in informative_check(np.full(10, 0.9), flat, better="higher")["reason"]
    with_nans = informative_check(np.array([np.nan, np.nan] + [0.9] * 8), table, better="higher")
    assert with_nans["informative"] is True and with_nans["sign_test_p"] == pytest.approx(0.5**8)
    lonely = informative_check(np.array([0.9] + [np.nan] * 9), table, better="higher")
    assert lonely["informative"] is False and "fewer than 2" in lonely["reason"]


def test_recon_alignment_by_image_id():
    table = hand_frame()
    values = np.linspace(0.6, 0.95, 10)
    ids = [f"i{k}" for k in range(10)]
    shuffled = pd.Series(values, index=ids).iloc[::-1]
    assert informative_check(shuffled, table, better="higher") == informative_check(values, table, better="higher")
    with pytest.raises(ValueError, match="missing"):
        informative_check(shuffled.iloc[1:], table, better="higher")
    with pytest.raises(ValueError, match="10 values"):
        informative_check(values[:-1], table, better="higher")


def test_set_metric_informative_kid_like():
    floors, ceilings = {"blur": 0.1, "noise": 0.3}, {"samples": 0.001}
    good = set_metric_informative(0.01, floors, ceilings, better="lower")
    assert good["informative"] is True and good["best_floor"] == "blur" and good["best_floor_value"] == 0.1
    assert good["separation"] == pytest.approx(0.09 / 0.099) and good["ceiling_value"] == 0.001
    poor = set_metric_informative(0.09, floors, ceilings, better="lower")
    assert poor["informative"] is False and poor["separation"] == pytest.approx(0.01 / 0.099)
    assert set_metric_informative(0.01, floors, ceilings, better="higher")["informative"] is False
    assert set_metric_informative(np.nan, floors, ceilings, better="lower")["informative"] is False
