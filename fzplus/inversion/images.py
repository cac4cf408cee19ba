"""The resizing protocol of the inversion (SPEC §5, the authors' code).

- Targets are brought to the generator's resolution with a Lanczos filter when they are loaded.
- The perceptual loss sees both images at `perceptual_size` (authors: 256): the target resized once with
  Lanczos, the reconstruction with bicubic interpolation (differentiable, every step).
- Images are float tensors [N, 3, H, W] in [-1, 1]. Lanczos runs in PIL on 32-bit float channels, so no
  8-bit rounding happens between loading and the loss.
"""
from __future__ import annotations

import os
import pathlib
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


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


def load_target(path: str | os.PathLike, *, resolution: int) -> torch.Tensor:
    """An image file -> [1, 3, resolution, resolution] in [-1, 1] (RGB; Lanczos if the size differs)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"target image {path} does not exist")
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.float32)
    if array.shape[0] != array.shape[1]:
        raise ValueError(f"target image {path} is {array.shape[1]}x{array.shape[0]}; targets must be square (aligned crops)")
    x = torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1.0
    return resize_lanczos(x, resolution)


def load_targets(paths: Sequence[str | os.PathLike], *, resolution: int) -> torch.Tensor:
    """Several image files -> [N, 3, resolution, resolution] in [-1, 1]."""
    return torch.cat([load_target(p, resolution=resolution) for p in paths])
