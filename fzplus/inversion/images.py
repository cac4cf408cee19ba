"""The resizing protocol of the inversion (SPEC §5, the authors' code).

- Targets are brought to the generator's resolution with a Lanczos filter when they are loaded.
- The perceptual loss sees both images at `perceptual_size` (authors: 256): the target resized once with
  Lanczos, the reconstruction with bicubic interpolation (differentiable, every step).
- Images are float tensors [N, 3, H, W] in [-1, 1]. Lanczos runs in PIL on 32-bit float channels, so no
  8-bit rounding happens between loading and the loss.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fzplus.images import to_float


def resize_lanczos(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size] with PIL's Lanczos filter (per channel, float32); not differentiable."""
    assert images.ndim == 4, f"images must be [N, C, H, W], got {tuple(images.shape)}"
    if images.shape[-2:] == (size, size):
        return images.clone()
    arrays = images.detach().to("cpu", torch.float32).numpy()
    out = np.stack([
        np.stack([np.asarray(Image.fromarray(channel).resize((size, size), Image.Resampling.LANCZOS)) for channel in image])
        for image in arrays
    ])
    return torch.from_numpy(out).to(images.device, images.dtype)


def resize_bicubic(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size], bicubic (align_corners=False, as the authors); differentiable."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)


def load_target(path: str | os.PathLike, *, resolution: int, crop: float = 1.0) -> torch.Tensor:
    """An image file -> [1, 3, resolution, resolution] in [-1, 1], checked, converted, centre-cropped and
    resized exactly as the pipeline prepares its targets (fzplus.targets.prepare_target: Lanczos, then 8-bit)."""
    from fzplus.targets import prepare_target  # fzplus.targets uses this module's resize_lanczos

    return to_float(prepare_target(path, resolution=resolution, crop=crop).pixels[None])


def load_targets(paths: Sequence[str | os.PathLike], *, resolution: int, crop: float = 1.0) -> torch.Tensor:
    """Several image files -> [N, 3, resolution, resolution] in [-1, 1]."""
    return torch.cat([load_target(p, resolution=resolution, crop=crop) for p in paths])
