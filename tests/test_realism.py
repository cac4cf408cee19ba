"""KID realism metric (benchmarks.metrics.realism): the estimator on Gaussians, and on the committed mini generator with
the ST-LPIPS trunk, where blurred or noised copies of its samples must read as far less realistic."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.metrics.realism import kid, kid_per_group, realism_features

ROOT = pathlib.Path(__file__).resolve().parents[1]
VGG_CHANNELS = (64, 128, 256, 512, 512)


def gaussian(n: int, *, d: int = 16, shift: float = 0.0, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def naive_kid(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook double sums, element by element, cubic kernel with coef0 = 1."""
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_double_sums():
    x, y = gaussian(7, d=5, seed=0), gaussian(9, d=5, shift=0.3, seed=1)
    assert kid(x, y) == pytest.approx(naive_kid(x, y), rel=1e-12, abs=1e-12)


def test_kid_near_zero_for_one_distribution_and_grows_with_shift():
    x, y = gaussian(200, seed=10), gaussian(200, seed=11)
    same = kid(x, y)
    shifted = [kid(x, gaussian(200, shift=s, seed=11)) for s in (0.25, 0.5, 1.0)]
    assert shifted[0] > 0 and shifted[0] < shifted[1] < shifted[2], shifted
    assert abs(same) < 0.01 * shifted[2], (same, shifted)
    assert abs(same) < 0.1 * shifted[0], (same, shifted)


def test_kid_symmetric_and_validates():
    x, y = gaussian(30, seed=0), gaussian(45, shift=0.2, seed=1)
    assert abs(kid(x, y) - kid(y, x)) < 1e-12
    assert abs(kid(x, x.copy()) - kid(x.copy(), x)) < 1e-12
    with pytest.raises(ValueError, match="at least 2"):
        kid(x[:1], y)
    with pytest.raises(ValueError, match="at least 2"):
        kid(x, y[:1])
    with pytest.raises(ValueError, match="dimensions differ"):
        kid(x, y[:, :8])
    with pytest.raises(ValueError, match="2-D"):
        kid(x[0], y)


def test_kid_per_group():
    features = np.concatenate([gaussian(20, seed=0), gaussian(20, shift=1.0, seed=1), gaussian(1, seed=2)])
    reference = gaussian(40, seed=3)
    groups = [0.0] * 20 + [2.0] * 20 + [4.0]
    result = kid_per_group(features, groups, reference, degree=3)
    assert list(result) == [0.0, 2.0, 4.0]
    assert result[0.0] == pytest.approx(kid(features[:20], reference), abs=1e-12)
    assert result[2.0] == pytest.approx(kid(features[20:40], reference), abs=1e-12)
    assert result[2.0] > 10 * abs(result[0.0])
    assert math.isnan(result[4.0])
    with pytest.raises(ValueError):
        kid_per_group(features, groups[:-1], reference)


# ---- real perceptual trunk on the committed mini generator ----------------------------------------------


@pytest.fixture(scope="module")
def stlpips():
    from fzplus.perceptual import build_perceptual

    return build_perceptual("stlpips-vgg")


@pytest.fixture(scope="module")
def mini_samples():
    from fzplus.generator import load_generator

    G = load_generator(ROOT / "models" / "mini" / "generator.pt").eval().requires_grad_(False)
    with torch.no_grad():
        return [G(G.sample_z(48, seed=seed)).clamp(-1, 1) for seed in (1, 2)]


def gaussian_blur(images: torch.Tensor, *, size: int = 9, sigma: float = 3.0) -> torch.Tensor:
    t = torch.arange(size, dtype=images.dtype) - (size - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, size, size)
    padded = F.pad(images, [size // 2] * 4, mode="reflect")  # reflect: no dark frame for KID to pick up
    return F.conv2d(padded, kernel, groups=3)


def test_realism_features_shape_and_batching(stlpips, mini_samples):
    images = mini_samples[0][:6]
    features = realism_features(images, stlpips)
    assert features.shape == (6, 2 * sum(VGG_CHANNELS)) and features.dtype == np.float64
    assert np.allclose(realism_features(images, stlpips, batch_size=4), features, atol=1e-5)
    first = stlpips.features(images)[0]  # first block: channel means, then channel stds
    assert np.allclose(features[:, :64], first.mean(dim=(2, 3)).double().numpy(), atol=1e-6)
    assert np.allclose(features[:, 64:128], first.std(dim=(2, 3), unbiased=False).double().numpy(), atol=1e-6)
    assert (features[:, 64:128] >= 0).all() and (features[:, 64:128] > 0).mean() > 0.5  # some ReLU channels are dead
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        realism_features(images[:, :1], stlpips)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        realism_features(images[0], stlpips)


def test_kid_separates_degraded_samples(stlpips, mini_samples):
    reference, fresh = mini_samples
    noised = (fresh + 0.3 * torch.randn(fresh.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    ref = realism_features(reference, stlpips)
    scores = {
        name: kid(realism_features(images, stlpips), ref)
        for name, images in (("same", fresh), ("blurred", gaussian_blur(fresh)), ("noised", noised))
    }
    print("KID vs seed-1 samples:", {k: f"{v:.4g}" for k, v in scores.items()})
    assert scores["blurred"] > 0 and scores["noised"] > 0, scores
    assert abs(scores["same"]) < 0.1 * min(scores["blurred"], scores["noised"]), scores
