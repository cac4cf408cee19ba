"""Reconstruction metrics: MSE and SSIM against hand computations, the uint8 conversion, the per-image frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate1d

from benchmarks.metrics.reconstruction import (
    mse,
    read_images,
    reconstruction_metrics,
    reconstruction_metrics_from_files,
    ssim,
    to_float,
    to_uint8,
)

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def constant_images(values, *, size: int = 16) -> np.ndarray:
    """uint8 [N, size, size, 3], image n filled with values[n] (a number or one per channel)."""
    return np.stack([np.broadcast_to(np.asarray(v, np.uint8), (size, size, 3)) for v in values]).copy()


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM written out for one uint8 [H, W, 3] pair: 11-tap Gaussian (sigma 1.5) weights
    normalised to 1, edge-repeating reflection, population moments, mean of the whole map, mean of channels."""
    taps = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()

    def blur(image):
        return correlate1d(correlate1d(image, taps, axis=0, mode="reflect"), taps, axis=1, mode="reflect")

    scores = []
    for channel in range(3):
        x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        ssim_map = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
        scores.append(ssim_map.mean())
    return float(np.mean(scores))


def test_mse_of_hand_made_images():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.stack([torch.full((3, 8, 8), 0.5), torch.full((3, 8, 8), -1.0)])
    y[1, 2] = 1.0  # image 1: errors 1, 1, 1 on channels 0, 1, 2 -> 1
    np.testing.assert_allclose(mse(x, y), [0.25, 1.0], rtol=0, atol=1e-12)
    y[1, 0, 0, 0] = 0.0  # one pixel of 192 now has error 0: mean = 191 / 192
    np.testing.assert_allclose(mse(x, y)[1], 191 / 192, rtol=1e-12)


def test_mse_accepts_uint8_in_either_layout():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 3, 12, 12, 3), dtype=np.uint8)
    expected = ((a / 127.5 - b / 127.5) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(mse(a, b), expected, rtol=1e-6)
    np.testing.assert_allclose(
        mse(torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2)), expected, rtol=1e-6
    )


def test_mse_rejects_unpaired_images():
    with pytest.raises(ValueError, match="paired"):
        mse(torch.zeros(1, 3, 8, 8), torch.zeros(2, 3, 8, 8))


def test_uint8_round_trip_and_rounding():
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    np.testing.assert_array_equal(to_uint8(to_float(every_value)), every_value)
    x = torch.zeros(1, 3, 2, 2)
    x[0, 1, 0, 1] = -1 + 3 / 127.5  # -> 3 at pixel (0, 1) of channel 1
    x[0, 0, 1, 0] = 1.2  # clipped -> 255
    x[0, 2, 1, 1] = -1.5  # clipped -> 0
    u = to_uint8(x)
    assert u.shape == (1, 2, 2, 3) and u.dtype == np.uint8
    assert u[0, 0, 1, 1] == 3 and u[0, 1, 0, 0] == 255 and u[0, 1, 1, 2] == 0
    assert u[0, 0, 0, 0] == 128  # 0 -> 127.5, rounded half to even
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(every_value).permute(0, 3, 1, 2)), every_value)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((1, 3, 4, 4), 200.0), r"\[-1, 1\]"),
        (np.zeros((1, 4, 4, 3), np.float32), r"\[N, 3, H, W\]"),
        (np.zeros((1, 4, 4), np.uint8), r"\[N, H, W, 3\]"),
        (np.zeros((1, 3, 4, 4), np.int64), "dtype"),
    ],
)
def test_to_uint8_rejects_bad_input(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        to_uint8(bad)


@pytest.mark.parametrize("include_border", [True, False])
def test_ssim_of_an_image_with_itself_is_one(include_border):
    images = np.random.default_rng(1).integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    np.testing.assert_allclose(ssim(images, images, include_border=include_border), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("include_border", [True, False])
def test_ssim_of_constant_images_is_the_luminance_term(include_border):
    # Flat images have zero local variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) everywhere.
    pairs = [(100, 120), (0, 255), (30, 31)]
    a, b = constant_images([p[0] for p in pairs]), constant_images([p[1] for p in pairs])
    expected = [(2 * p * q + C1) / (p * p + q * q + C1) for p, q in pairs]
    np.testing.assert_allclose(ssim(a, b, include_border=include_border), expected, rtol=1e-10)


def test_ssim_is_the_plain_mean_of_the_channel_scores():
    a, b = constant_images([(100, 50, 50)]), constant_images([(160, 50, 50)])  # only R differs
    luminance = (2 * 100 * 160 + C1) / (100**2 + 160**2 + C1)
    np.testing.assert_allclose(ssim(a, b), [(luminance + 2) / 3], rtol=1e-10)


def test_ssim_matches_a_written_out_reference_and_is_symmetric():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    expected = [reference_ssim(a[i], b[i]) for i in range(2)]
    np.testing.assert_allclose(ssim(a, b), expected, rtol=1e-9)
    np.testing.assert_allclose(ssim(b, a), expected, rtol=1e-9)
    assert np.all(ssim(a, b, include_border=False) != ssim(a, b))  # the border strip matters on a 24 px image


def test_reconstruction_metrics_frame_and_perceptual_protocol():
    rng = np.random.default_rng(3)
    targets = torch.from_numpy(rng.uniform(-1, 1, (3, 3, 16, 16))).float()
    recons = (targets + 0.1 * torch.from_numpy(rng.normal(size=(3, 3, 16, 16))).float()).clamp(-1, 1)
    seen = []

    def perceptual(x, y):  # a stand-in distance: mean absolute difference, records its inputs
        seen.append((x.shape, float(x.min()), float(x.max())))
        return (x - y).abs().mean(dim=(1, 2, 3))

    frame = reconstruction_metrics(
        targets, recons, image_ids=["a", "b", "c"], space="F/Z+", perceptual=perceptual, batch_size=2
    )
    assert list(frame.columns) == ["space", "image_id", "mse", "ssim", "perceptual"]
    assert frame.space.eq("F/Z+").all() and frame.image_id.tolist() == ["a", "b", "c"]
    assert [s[0][0] for s in seen] == [2, 1] and all(-1 <= lo and hi <= 1 for _, lo, hi in seen)
    qt, qr = to_float(to_uint8(targets)), to_float(to_uint8(recons))  # quantize=True: the PNG pixels
    np.testing.assert_allclose(frame.mse, mse(qt, qr), rtol=1e-12)
    np.testing.assert_allclose(frame.perceptual, (qt - qr).abs().mean(dim=(1, 2, 3)).double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(frame.ssim, ssim(targets, recons), rtol=1e-12)
    raw = reconstruction_metrics(targets, recons, image_ids=["a", "b", "c"], space="F/Z+", quantize=False)
    np.testing.assert_allclose(raw.mse, mse(targets, recons), rtol=1e-12)
    assert raw.perceptual.isna().all()


@pytest.mark.parametrize(
    "ids, perceptual, message",
    [
        (["a", "b"], None, "2 image_ids for 3 images"),
        (["a", "a", "b"], None, "unique"),
        (["a", "b", "c"], lambda x, y: torch.zeros(1), "one distance per image"),
    ],
)
def test_reconstruction_metrics_errors(ids, perceptual, message):
    images = torch.zeros(3, 3, 16, 16)
    with pytest.raises(ValueError, match=message):
        reconstruction_metrics(images, images, image_ids=ids, space="Z", perceptual=perceptual)


def test_metrics_from_files_match_in_memory(tmp_path):
    rng = np.random.default_rng(4)
    targets, recons = rng.integers(0, 256, (2, 2, 16, 16, 3), dtype=np.uint8)
    for folder, images in (("targets", targets), ("recon", recons)):
        (tmp_path / folder).mkdir()
        for image_id, image in zip(["x1", "x2"], images):
            Image.fromarray(image).save(tmp_path / folder / f"{image_id}.png")
    np.testing.assert_array_equal(read_images([tmp_path / "recon" / "x2.png"])[0], recons[1])
    from_files = reconstruction_metrics_from_files(tmp_path / "targets", tmp_path / "recon", space="W")
    in_memory = reconstruction_metrics(targets, recons, image_ids=["x1", "x2"], space="W")
    pd.testing.assert_frame_equal(from_files, in_memory)
    (tmp_path / "targets" / "x2.png").unlink()
    with pytest.raises(FileNotFoundError, match="x2.png"):
        reconstruction_metrics_from_files(tmp_path / "targets", tmp_path / "recon", space="W")
