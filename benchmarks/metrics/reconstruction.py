"""Per-image reconstruction metrics (paper §4, Table 1, Fig. 2): MSE, SSIM and a perceptual distance.

Image conventions (one conversion, `to_uint8`, used by every metric, figure and grid of the suite):
  float images: torch tensors or numpy arrays [N, 3, H, W] in [-1, 1] (the generator's layout and range);
  uint8 images: numpy arrays [N, H, W, 3] (PIL's layout, what the PNG files hold) or torch tensors
                [N, 3, H, W] (torch's layout), 0..255.
float -> uint8 is  u = round(clip(x, -1, 1) * 127.5 + 127.5)  (round half to even), the inverse of
uint8 -> float     x = u / 127.5 - 1,  so uint8 -> float -> uint8 is the identity.

How the authors evaluated (raven38/hypershpere-gan-inversion, HFGI3D/eval.py: the one evaluation script of
their repository; the 2D Table 1 has none, so this is what they "likely used"): both images read back from
8-bit PNG files, then
  MSE  = mean((a / 127.5 - b / 127.5)^2) over all pixels and channels, i.e. on the [-1, 1] scale;
  SSIM = mean over the 3 channels of OpenCV's `quality.QualitySSIM_compute` (per channel: Gaussian window
         11x11, sigma 1.5, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, population (co)variances, mean of
         the whole SSIM map, borders included);
  LPIPS on both images at full resolution.
`reconstruction_metrics(quantize=True)` therefore rounds both images to uint8 first, exactly as saving
them to PNG does, and `ssim` reproduces OpenCV's settings with scikit-image (see its docstring).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from fzplus.images import to_float, to_uint8  # noqa: F401  (part of this module's API)

METRIC_COLUMNS = ("space", "image_id", "mse", "ssim", "perceptual")
SSIM_SETTINGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, K1=0.01, K2=0.03, data_range=255)


def _paired(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = to_float(x, name="x"), to_float(y, name="y")
    if x.shape != y.shape:
        raise ValueError(f"images must be paired: x is {tuple(x.shape)}, y is {tuple(y.shape)}")
    return x, y


def mse(x, y) -> np.ndarray:
    """Mean squared error per image on the [-1, 1] scale, over all pixels and the 3 channels:
    x, y [N, 3, H, W] -> float64 [N]. Float input is used as given (pass `quantize` through
    `reconstruction_metrics` for the authors' 8-bit protocol)."""
    x, y = _paired(x, y)
    return (x.double() - y.double()).square().mean(dim=(1, 2, 3)).numpy()


def ssim(x, y, *, include_border: bool = True) -> np.ndarray:
    """Structural similarity per image on uint8 RGB: x, y -> float64 [N] (1 = identical).

    Both images go through `to_uint8` (float input is clipped and rounded, as a PNG would store it), then
    scikit-image's `structural_similarity` runs on the uint8 [H, W, 3] pair with data_range=255,
    channel_axis=-1: each of R, G, B is scored separately and the score is the plain mean of the three
    channel scores (no colour conversion, no luma weighting; the authors averaged OpenCV's per-channel
    scores the same way). Window: Gaussian, sigma 1.5, truncated at 3.5 sigma (11 x 11 taps);
    K1 = 0.01, K2 = 0.03 (C1 = 6.5025, C2 = 58.5225); population (co)variances (Wang et al. 2004, OpenCV).

    include_border=True (default, the authors' OpenCV protocol) averages the whole SSIM map; False drops
    the 5-pixel strip along the edges first (scikit-image's and Wang et al.'s MATLAB default). Remaining
    difference to OpenCV: at the edges scikit-image pads by reflection with the edge pixel repeated
    (scipy 'reflect'), OpenCV without it (BORDER_REFLECT_101); this touches only that 5-pixel strip.
    """
    a, b = to_uint8(x, name="x"), to_uint8(y, name="y")
    if a.shape != b.shape:
        raise ValueError(f"images must be paired: x is {a.shape}, y is {b.shape} (as [N, H, W, 3])")
    scores = np.empty(len(a), np.float64)
    for i, (image_a, image_b) in enumerate(zip(a, b)):
        cropped_mean, ssim_map = structural_similarity(image_a, image_b, channel_axis=-1, full=True, **SSIM_SETTINGS)
        scores[i] = ssim_map.mean(dtype=np.float64) if include_border else cropped_mean
    return scores


def _perceptual_distances(perceptual: Callable, x: torch.Tensor, y: torch.Tensor, *, batch_size: int) -> np.ndarray:
    device = (
        next(iter(perceptual.parameters()), torch.empty(0)).device
        if isinstance(perceptual, torch.nn.Module)
        else torch.device("cpu")
    )
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
            d = torch.as_tensor(perceptual(xb, yb)).reshape(-1)
            if d.numel() != len(xb):
                raise ValueError(
                    f"perceptual distance returned {d.numel()} values for {len(xb)} image pairs; "
                    f"it must return one distance per image [N]"
                )
            out.append(d.detach().double().cpu())
    return torch.cat(out).numpy()


def reconstruction_metrics(
    targets,
    recons,
    *,
    image_ids: Sequence[str],
    space: str,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    quantize: bool = True,
    include_border: bool = True,
    batch_size: int = 8,
) -> pd.DataFrame:
    """One row per image: space, image_id, mse, ssim, perceptual (NaN when `perceptual` is None).

    targets, recons: paired images [N, ...] (see the module docstring), image_ids: N names.
    quantize=True rounds both images to uint8 before every metric (the authors evaluated saved PNGs);
    False measures MSE and the perceptual distance on the float images as given (SSIM is always on uint8).
    perceptual(x, y) -> [N] on [-1, 1] images (e.g. fzplus.perceptual); an nn.Module gets its inputs on
    its own device, in batches of `batch_size`.
    """
    x, y = _paired(targets, recons)
    if quantize:
        x, y = to_float(to_uint8(x, name="targets")), to_float(to_uint8(y, name="recons"))
    image_ids = [str(i) for i in image_ids]
    if len(image_ids) != len(x):
        raise ValueError(f"{len(image_ids)} image_ids for {len(x)} images")
    if len(set(image_ids)) != len(image_ids):
        raise ValueError(
            f"image_ids must be unique; repeated: {sorted({i for i in image_ids if image_ids.count(i) > 1})}"
        )
    perceptual_values = (
        np.full(len(x), np.nan)
        if perceptual is None
        else _perceptual_distances(perceptual, x, y, batch_size=batch_size)
    )
    return pd.DataFrame(
        dict(
            space=space,
            image_id=image_ids,
            mse=mse(x, y),
            ssim=ssim(x, y, include_border=include_border),
            perceptual=perceptual_values,
        ),
        columns=list(METRIC_COLUMNS),
    )


def read_images(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """RGB image files -> uint8 [N, H, W, 3] exactly as stored (no resizing: metrics compare the pixels
    the pipeline wrote). All images must be RGB and of one size."""
    arrays = []
    for path in map(pathlib.Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        with Image.open(path) as image:
            if image.mode != "RGB":
                raise ValueError(f"image {path} has mode {image.mode!r}; the pipeline's images are RGB")
            arrays.append(np.asarray(image, np.uint8))
        if arrays[-1].shape != arrays[0].shape:
            raise ValueError(f"image {path} is {arrays[-1].shape}, unlike {paths[0]} ({arrays[0].shape})")
    if not arrays:
        raise ValueError("read_images: no paths given")
    return np.stack(arrays)


def reconstruction_metrics_from_files(
    target_dir: str | os.PathLike,
    recon_dir: str | os.PathLike,
    *,
    space: str,
    image_ids: Sequence[str] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """`reconstruction_metrics` on the PNGs of the data contract: <target_dir>/<image_id>.png against
    <recon_dir>/<image_id>.png (targets/images and inversion/<slug>/recon). image_ids default to every
    reconstruction found, sorted. Keyword arguments go to `reconstruction_metrics`."""
    target_dir, recon_dir = pathlib.Path(target_dir), pathlib.Path(recon_dir)
    if image_ids is None:
        image_ids = sorted(p.stem for p in recon_dir.glob("*.png"))
        if not image_ids:
            raise FileNotFoundError(f"no reconstructions (*.png) in {recon_dir}; run the inversion for {space!r} first")
    targets = read_images([target_dir / f"{i}.png" for i in image_ids])
    recons = read_images([recon_dir / f"{i}.png" for i in image_ids])
    return reconstruction_metrics(targets, recons, image_ids=image_ids, space=space, **kwargs)


__all__ = [
    "METRIC_COLUMNS",
    "SSIM_SETTINGS",
    "to_uint8",
    "to_float",
    "mse",
    "ssim",
    "reconstruction_metrics",
    "read_images",
    "reconstruction_metrics_from_files",
]
