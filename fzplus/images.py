"""Image tensors and arrays, the one images module of the suite:
- the one conversion between float [N, 3, H, W] in [-1, 1] (the generator's range) and uint8 [N, H, W, 3]
  (files, metrics, face detectors) that every part of the suite uses;
- the resizing protocol of the inversion (SPEC §5, the authors' code): targets are brought to the
  generator's resolution with a Lanczos filter when they are loaded (fzplus.targets); the perceptual loss
  sees both images at `perceptual_size` (authors: 256), the target resized once with Lanczos, the
  reconstruction with bicubic interpolation (differentiable, every step). Lanczos runs in PIL on 32-bit
  float channels, so no 8-bit rounding happens between loading and the loss;
- the encoders' input resize (antialiased bilinear).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FLOAT_RANGE_LIMIT = 2.0  # float images beyond +-2 are on another scale (0..1 or 0..255), not [-1, 1] with overshoot


def _check_float_range(array: np.ndarray, *, name: str) -> None:
    peak = float(np.abs(array).max()) if array.size else 0.0
    if not np.isfinite(peak) or peak > FLOAT_RANGE_LIMIT:
        raise ValueError(
            f"{name}: float images must be in [-1, 1] (max |value| is {peak}); convert 0..255 images "
            f"to uint8 and 0..1 images with x * 2 - 1"
        )


def to_uint8(images, *, name: str = "images") -> np.ndarray:
    """Images (see the module docstring) -> uint8 numpy [N, H, W, 3]. Float images are clipped to [-1, 1]
    and rounded; uint8 images are only transposed where needed."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
        if images.dtype == torch.uint8:
            images = images.numpy().transpose(0, 2, 3, 1) if images.ndim == 4 else images.numpy()
        else:
            images = images.double().numpy()
    array = np.asarray(images)
    if array.dtype == np.uint8:
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(
                f"{name}: uint8 arrays must be [N, H, W, 3] (uint8 tensors [N, 3, H, W]), got {array.shape}"
            )
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name}: images must be float in [-1, 1] or uint8, got dtype {array.dtype}")
    if array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"{name}: float images must be [N, 3, H, W], got {array.shape}")
    _check_float_range(array, name=name)
    scaled = np.clip(array.astype(np.float64), -1.0, 1.0) * 127.5 + 127.5
    return np.ascontiguousarray(np.rint(scaled).astype(np.uint8).transpose(0, 2, 3, 1))


def to_float(images, *, name: str = "images") -> torch.Tensor:
    """Images (see the module docstring) -> float32 tensor [N, 3, H, W] in [-1, 1]. Float input is
    returned as float32 unchanged (not clipped, not rounded); uint8 input becomes u / 127.5 - 1."""
    is_uint8 = (
        (images.dtype == torch.uint8) if isinstance(images, torch.Tensor) else np.asarray(images).dtype == np.uint8
    )
    if is_uint8:
        array = to_uint8(images, name=name).transpose(0, 3, 1, 2)
        return torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0)
    tensor = (
        torch.as_tensor(images).detach().cpu().float()
        if isinstance(images, torch.Tensor)
        else torch.from_numpy(np.asarray(images, dtype=np.float32))
    )
    if tensor.ndim != 4 or tensor.shape[1] != 3:
        raise ValueError(f"{name}: float images must be [N, 3, H, W], got {tuple(tensor.shape)}")
    _check_float_range(tensor.numpy(), name=name)
    return tensor


def resize_lanczos(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size] with PIL's Lanczos filter (per channel, float32); not differentiable."""
    assert images.ndim == 4, f"images must be [N, C, H, W], got {tuple(images.shape)}"
    if images.shape[-2:] == (size, size):
        return images.clone()
    arrays = images.detach().to("cpu", torch.float32).numpy()
    out = np.stack(
        [
            np.stack(
                [
                    np.asarray(Image.fromarray(channel).resize((size, size), Image.Resampling.LANCZOS))
                    for channel in image
                ]
            )
            for image in arrays
        ]
    )
    return torch.from_numpy(out).to(images.device, images.dtype)


def round_to_8bit(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] as an 8-bit file would hold them: clipped, rounded to the 256 levels, back in [-1, 1]
    (the authors' Lanczos_resizing does this to the perceptual target: its PIL resize works on uint8)."""
    levels = ((images.clamp(-1, 1) + 1) * 127.5).round()
    return levels / 127.5 - 1


def resize_bicubic(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size], bicubic (align_corners=False, as the authors); differentiable."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)


def resize_bilinear(images: torch.Tensor, *, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size]; antialiased bilinear when shrinking (the encoders' input:
    fzplus.encoders)."""
    assert images.ndim == 4, f"images must be [N, C, H, W], got {tuple(images.shape)}"
    if images.shape[-2:] == (size, size):
        return images
    shrinking = images.shape[-1] > size or images.shape[-2] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
