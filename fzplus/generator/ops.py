"""Plain-PyTorch building blocks of the StyleGAN2 generator.

No custom CUDA kernels and no JIT builds: every op here is a composition of stock PyTorch calls, so the
generator runs unchanged on CPU and GPU. The numerics follow NVIDIA's stylegan2-ada-pytorch (weights
stored unscaled, equalised-learning-rate gains applied at run time, [1, 3, 3, 1] FIR resampling), so
that NVIDIA and rosinality checkpoints load without conversion of values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


def fir_filter_2d(taps=(1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """Normalised separable FIR filter as a 2-D kernel (sums to 1); shape [k, k]."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, pad=(0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad, and convolve every channel with the 2-D filter f.

    x: [N, C, H, W]; f: [k, k]; pad: (left, right, top, bottom), may be negative (crop).
    The filter is flipped so that the op is a true convolution, as in NVIDIA's reference.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    kernel = (f * gain).flip([0, 1]).to(dtype=x.dtype, device=x.device)
    kernel = kernel[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, kernel, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling with the FIR filter f (used on the RGB skip path); [N, C, H, W] -> [N, C, 2H, 2W]."""
    k = f.shape[0]
    p0, p1 = (k + 1) // 2, (k - 2) // 2
    return upfirdn2d(x, f, up=2, pad=(p0, p1, p0, p1), gain=4.0)


def _conv(x: torch.Tensor, weight: torch.Tensor, *, up: int, f: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Same-size 3x3 (or 1x1) conv, or 2x upsampling conv: transposed stride-2 conv followed by FIR blur."""
    k = weight.shape[-1]
    if up == 1:
        return F.conv2d(x, weight, padding=k // 2, groups=groups)
    assert up == 2 and k == 3, "only 3x3 convs upsample"
    if groups == 1:
        wt = weight.transpose(0, 1)
    else:
        o, i = weight.shape[:2]
        wt = weight.reshape(groups, o // groups, i, k, k).transpose(1, 2).reshape(groups * i, o // groups, k, k)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # [.., 2H+1, 2W+1]
    return upfirdn2d(x, f, pad=(1, 1, 1, 1), gain=4.0)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    fused: bool = False,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution.

    x: [N, I, H, W]; weight: [O, I, k, k] (already gain-scaled); styles: [N, I].
    Returns [N, O, H*up, W*up].

    fused=True is the reference path: one explicit weight tensor per sample, run as a grouped conv
    (the paper's formula, literally). fused=False scales the activations instead and runs one shared conv
    over the batch; it is mathematically identical and several times faster on CPU.
    """
    n, i_ch = styles.shape
    o_ch = weight.shape[0]
    assert x.shape[:2] == (n, i_ch), f"x {tuple(x.shape)} does not match styles {tuple(styles.shape)}"
    f = resample_filter if resample_filter is not None else fir_filter_2d()
    if fused:
        w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
        if demodulate:
            w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + DEMOD_EPS).rsqrt()
        y = _conv(
            x.reshape(1, n * i_ch, *x.shape[2:]), w.reshape(n * o_ch, i_ch, *weight.shape[2:]), up=up, f=f, groups=n
        )
        return y.reshape(n, o_ch, *y.shape[2:])
    y = _conv(x * styles[:, :, None, None], weight, up=up, f=f)
    if demodulate:
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + DEMOD_EPS).rsqrt()  # [N, O]
        y = y * dcoefs[:, :, None, None]
    return y


def bias_act(
    x: torch.Tensor, bias: torch.Tensor, *, act: str = "lrelu", gain: float = 1.0, clamp: float | None = None
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply 'lrelu' (with its sqrt(2) gain) or 'linear', then clamp."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    x = x + bias.reshape(shape).to(x.dtype)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)
    elif act == "linear":
        x = x * gain if gain != 1 else x
    else:
        raise ValueError(f"unknown activation {act!r}; expected 'lrelu' or 'linear'")
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, *, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """PixelNorm: x / sqrt(mean(x^2) + eps) along dim."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
