"""Realism of edited images: a distribution distance (KID) between edited images and fresh generator samples.

The paper shows edits that leave the generator's image manifold as "unnatural textures" (Figs. 3-4); per-image
metrics against the unedited inversion cannot see that, since an edit is supposed to change the image. This
module measures how far a *set* of edited images lies from the distribution of the generator's own samples.

Features. The suite's perceptual network (`fzplus.perceptual.PerceptualDistance`: the ST-LPIPS or LPIPS VGG16
trunk), already loaded by every stage and offline for "stlpips-vgg", so no Inception download is needed. For
each unit-normalised layer we keep the per-channel spatial mean AND the per-channel spatial standard deviation:
texture artefacts (blotches, ripples, smearing) change how strongly a channel fires across the image, i.e. its
second moment, which a mean-pooled feature averages away (the idea behind Gram/style statistics). For the VGG
trunk that is 2 * (64 + 128 + 256 + 512 + 512) = 2944 numbers per image. dlib's face embeddings would cost
nothing either, but they are trained to be invariant to everything except identity, texture included.

Distance. KID (Binkowski et al. 2018, "Demystifying MMD GANs"): the squared maximum mean discrepancy with the
cubic polynomial kernel k(a, b) = (a.b / d + 1) ** 3, d = feature dimension. Unlike FID it has an unbiased
estimator whose bias does not depend on the sample size, which matters at the few dozen images per edit
strength of a benchmark. Being unbiased, it scatters around 0 for two samples of one distribution and can
then be slightly negative; only differences well above that scatter mean anything.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch


def realism_features(images: torch.Tensor, net, *, batch_size: int = 64) -> np.ndarray:
    """Per-layer channel means and standard deviations of `net`'s features.

    images: [N, 3, H, W] float in [-1, 1]. net: a `fzplus.perceptual.PerceptualDistance`.
    Returns float64 [N, 2 * sum_l C_l]: for each layer l in order, C_l spatial means then C_l spatial stds.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"realism_features: images must be a tensor [N, 3, H, W] in [-1, 1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"realism_features: images must be floating point in [-1, 1], got {images.dtype}")
    if batch_size < 1:
        raise ValueError(f"realism_features: batch_size must be >= 1, got {batch_size}")
    device = next(net.parameters()).device
    rows = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device=device, dtype=torch.float32)
            stats = []
            for f in net.features(batch):
                assert f.ndim == 4 and f.shape[0] == batch.shape[0], (
                    f"feature map must be [N, C, H, W], got {tuple(f.shape)}"
                )
                # unbiased=False: the deepest VGG map is 4x4 at 64 px, and a 1x1 map must give 0, not NaN.
                stats += [f.mean(dim=(2, 3)), f.std(dim=(2, 3), unbiased=False)]
            rows.append(torch.cat(stats, dim=1).double().cpu().numpy())
    if not rows:
        return np.zeros((0, 0), dtype=np.float64)
    return np.concatenate(rows, axis=0)


def polynomial_kernel(a: np.ndarray, b: np.ndarray, *, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(a_i, b_j) = (a_i . b_j / d + coef0) ** degree, [n, m]."""
    return (a @ b.T / a.shape[1] + coef0) ** degree


def kid_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from the kernel blocks [n, n], [m, m], [n, m]: dropping the diagonals k(a, a) is what
    makes the estimate unbiased."""
    n, m = kxy.shape
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid(x: np.ndarray, y: np.ndarray, *, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between samples x [n, d] and y [m, d] (n, m >= 2), polynomial kernel, float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"kid: samples must be 2-D [n, d], got shapes {x.shape} and {y.shape}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"kid: feature dimensions differ: x is {x.shape}, y is {y.shape}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"kid: the unbiased estimator needs at least 2 rows per sample, got n={n}, m={m}")
    kernel = dict(degree=degree, coef0=coef0)
    return kid_from_kernels(
        polynomial_kernel(x, x, **kernel), polynomial_kernel(y, y, **kernel), polynomial_kernel(x, y, **kernel)
    )


def kid_per_group(features: np.ndarray, groups: Sequence[Hashable], reference: np.ndarray, **kid_kwargs) -> dict:
    """KID of each group's rows of `features` [N, d] (groups: N labels, e.g. |alpha|) against `reference` [m, d].

    Keys in order of first appearance; a group with fewer than 2 rows gets NaN (no unbiased estimate).
    """
    features = np.asarray(features, dtype=np.float64)
    labels = list(groups)
    if features.ndim != 2 or len(labels) != features.shape[0]:
        raise ValueError(
            f"kid_per_group: need features [N, d] and N group labels, got {features.shape} and {len(labels)} labels"
        )
    result = {}
    for label in dict.fromkeys(labels):
        rows = features[[i for i, g in enumerate(labels) if g == label]]
        result[label] = kid(rows, reference, **kid_kwargs) if rows.shape[0] >= 2 else float("nan")
    return result
