"""A residual StyleGAN2-style discriminator (equalised learning rate, minibatch std), for training the
mini generator. Channel widths mirror the generator's."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fzplus.generator.networks import FullyConnected
from fzplus.generator.ops import LRELU_GAIN, LRELU_SLOPE


class EqualizedConv2d(nn.Module):
    """Conv with N(0, 1) stored weights scaled by 1/sqrt(fan_in) at run time (equalised learning rate)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, bias: bool = True, activation: bool = True
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.gain, self.bias, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN if self.activation else x


class DiscriminatorBlock(nn.Module):
    """3x3 conv at full resolution, 2x average-pool, 3x3 conv at half resolution (as StyleGAN2's
    downsampling conv, at a quarter of the cost of convolving before pooling), plus a 1x1 residual path
    (scaled by 1/sqrt(2))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels)
        self.conv1 = EqualizedConv2d(in_channels, out_channels)
        self.skip = EqualizedConv2d(in_channels, out_channels, kernel_size=1, bias=False, activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(self.skip(x), 2)
        x = self.conv1(F.avg_pool2d(self.conv0(x), 2))
        return (x + y) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """image [N, 3, R, R] -> realness logit [N]."""

    def __init__(self, *, resolution: int, channels: dict[int, int], mbstd_group: int = 4):
        super().__init__()
        self.resolution, self.mbstd_group = resolution, mbstd_group
        self.from_rgb = EqualizedConv2d(3, channels[resolution], kernel_size=1)
        resolutions = [2**i for i in range(int(math.log2(resolution)), 2, -1)]
        self.blocks = nn.ModuleList(DiscriminatorBlock(channels[r], channels[r // 2]) for r in resolutions)
        c4 = channels[4]
        self.conv = EqualizedConv2d(c4 + 1, c4)
        self.fc = FullyConnected(c4 * 16, c4, activation="lrelu")
        self.out = FullyConnected(c4, 1)

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.mbstd_group, n)
        assert n % g == 0, f"batch {n} must be divisible by the minibatch-std group {g}"
        y = x.reshape(g, n // g, c, h, w).float()
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # [n/g]
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.shape[1:] == (3, self.resolution, self.resolution), (
            f"expected [N, 3, {self.resolution}, {self.resolution}], got {tuple(img.shape)}"
        )
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.minibatch_std(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
