"""StyleGAN2 generator (config F, 'skip' architecture) in plain PyTorch, batch-first.

Parameter and buffer names are those of NVIDIA's stylegan2-ada-pytorch (`mapping.fc0.weight`,
`synthesis.b16.conv0.affine.bias`, ...), so an NVIDIA state dict loads as it is.

Layer schedule. The synthesis network is a flat list of style-taking layers in execution order:
    b4.conv1, b4.torgb, b8.conv0, b8.conv1, b8.torgb, ..., bR.conv0, bR.conv1, bR.torgb
Layer `bR.conv0` reads ws[2k-1], `bR.conv1` ws[2k], `bR.torgb` ws[2k+1] with k = log2(R) - 2, and
`b4.conv1`, `b4.torgb` read ws[0], ws[1]; so num_ws = 2 log2(R) - 2 (18 at 1024, 10 at 64).

Split into base code and detail code (SPEC §3, the authors' convention). For a base code of spatial
size s, f is the output of the first conv of the s x s block (conv0, the upsampling conv; conv1 for
s = 4). The ws it consumed (indices < M, M = first_detail_layer(s)) no longer matter. `features` also
returns the RGB skip image accumulated so far; `synthesize_from` carries it on when given, which
reproduces `synthesize` exactly, and restarts the skip at block s when it is None, which is what the
authors' code (and the F spaces) do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from fzplus.generator.interface import NOISE_MODES as NOISE_MODES  # re-exported: its home was here
from fzplus.generator.interface import LayerSpec, StyleGenerator, StyleSynthesis
from fzplus.generator.ops import (
    bias_act,
    fir_filter_2d,
    modulated_conv2d,
    normalize_2nd_moment,
    upsample2d,
)


class BaseCode(NamedTuple):
    """Generator state at a split: feature map f [N, C, s, s] and RGB skip image [N, 3, s/2, s/2] or None."""

    f: torch.Tensor
    rgb: torch.Tensor | None = None


class FullyConnected(nn.Module):
    """Equalised-learning-rate linear layer; stored weight is N(0, 1) / lr_multiplier."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: str = "linear",
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x @ (self.weight * self.weight_gain).t(), self.bias * self.bias_gain, act=self.activation)


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]: PixelNorm then `num_layers` lrelu FC layers (lr multiplier 0.01)."""

    def __init__(self, *, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", self.make_layer(features[i], features[i + 1], lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @staticmethod
    def make_layer(in_features: int, out_features: int, *, lr_multiplier: float) -> nn.Module:
        """One dense layer of the mapping (StyleGAN1's mapping differs only here)."""
        return FullyConnected(in_features, out_features, lr_multiplier=lr_multiplier, activation="lrelu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {tuple(z.shape)}"
        x = normalize_2nd_moment(z)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor, *, beta: float = 0.995) -> None:
        """Moving average of w, tracked during training (truncation centre; StyleGAN1's dlatent_avg_beta is beta)."""
        self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, beta))


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling), noise, bias, lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        up: int = 1,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", fir_filter_2d())

    def forward(
        self, x: torch.Tensor, styles: torch.Tensor, *, noise_mode: str = "const", fused: bool = False
    ) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter, fused=fused)
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, to RGB."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, styles: torch.Tensor, *, fused: bool = False, **_) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, styles * self.weight_gain, demodulate=False, fused=fused)
        return bias_act(x, self.bias, act="linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """Container of one resolution's layers (the schedule, not this module, runs them)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None,
    ):
        super().__init__()
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", fir_filter_2d())


class SynthesisNetwork(StyleSynthesis):
    """ws [N, num_ws, w_dim] (or per-layer styles) -> image [N, img_channels, R, R] in about [-1, 1].

    `styles` is S space: per-layer style vectors affine_l(ws[:, w_index(l)]), one [N, C_l] tensor per layer, C_l
    the layer's input channels (`style_dims`)."""

    def __init__(
        self,
        *,
        w_dim: int,
        resolution: int,
        channels: dict[int, int],
        img_channels: int = 3,
        conv_clamp: float | None = None,
    ):
        super().__init__(w_dim=w_dim, resolution=resolution, img_channels=img_channels)
        self.channels = self._block_channels(channels)
        specs = [LayerSpec(4, "conv1", 0), LayerSpec(4, "torgb", 1)]
        for r in self.block_resolutions:
            in_ch = 0 if r == 4 else self.channels[r // 2]
            block = SynthesisBlock(
                in_ch, self.channels[r], w_dim=w_dim, resolution=r, img_channels=img_channels, conv_clamp=conv_clamp
            )
            setattr(self, f"b{r}", block)
            if r > 4:
                k = int(math.log2(r)) - 2
                specs += [
                    LayerSpec(r, "conv0", 2 * k - 1),
                    LayerSpec(r, "conv1", 2 * k),
                    LayerSpec(r, "torgb", 2 * k + 1),
                ]
        self.layer_specs: tuple[LayerSpec, ...] = tuple(specs)
        self.fused_modconv = False

    def split_position(self, at: int) -> int:
        """Index in the schedule of the layer whose output is the base code of spatial size `at`."""
        self._check_split_size(at)
        name = "conv1" if at == 4 else "conv0"
        return self.layer_specs.index(next(s for s in self.layer_specs if s.block == at and s.name == name))

    def run(
        self,
        styles: Sequence[torch.Tensor],
        *,
        start: int = 0,
        stop: int | None = None,
        x: torch.Tensor | None = None,
        img: torch.Tensor | None = None,
    ):
        """Run schedule positions [start, stop) with one style tensor per position; returns (x, img)."""
        stop = len(self.layer_specs) if stop is None else stop
        assert len(styles) == stop - start, f"expected {stop - start} style tensors, got {len(styles)}"
        for spec, s in zip(self.layer_specs[start:stop], styles):
            if x is None:
                const = getattr(self, f"b{spec.block}").const
                x = const[None].expand(s.shape[0], *const.shape).to(s.dtype)
            layer = self.layer(spec)
            if spec.name == "torgb":
                y = layer(x, s, fused=self.fused_modconv)
                img = y if img is None else upsample2d(img, getattr(self, f"b{spec.block}").resample_filter) + y
            else:
                x = layer(x, s, noise_mode=self.noise_mode, fused=self.fused_modconv)
        return x, img


def default_channels(resolution: int, *, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """NVIDIA's rule: channels at resolution r = min(channel_base // r, channel_max)."""
    return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, int(math.log2(resolution)) + 1)}


class Generator(StyleGenerator):
    """StyleGAN2 generator: mapping (Z -> W), truncation, synthesis (W+ or S -> image), split at F.

    All tensors batch-first. Images are [N, 3, R, R] with values in about [-1, 1]. What it shares with StyleGAN1
    (sizes, noise_mode, map, truncate, styles, synthesize, forward, sample_z) is interface.StyleGenerator's.
    """

    def __init__(
        self,
        *,
        resolution: int = 1024,
        z_dim: int = 512,
        w_dim: int = 512,
        img_channels: int = 3,
        channels: dict[int, int] | None = None,
        channel_base: int = 32768,
        channel_max: int = 512,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        channels = (
            default_channels(resolution, channel_base=channel_base, channel_max=channel_max)
            if channels is None
            else {int(k): int(v) for k, v in channels.items()}
        )
        self.config = dict(
            resolution=resolution,
            z_dim=z_dim,
            w_dim=w_dim,
            img_channels=img_channels,
            channels=dict(channels),
            mapping_layers=mapping_layers,
            mapping_lr_multiplier=mapping_lr_multiplier,
            conv_clamp=conv_clamp,
        )
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, resolution=resolution, channels=channels, img_channels=img_channels, conv_clamp=conv_clamp
        )
        self.mapping = MappingNetwork(
            z_dim=z_dim,
            w_dim=w_dim,
            num_ws=self.synthesis.num_ws,
            num_layers=mapping_layers,
            lr_multiplier=mapping_lr_multiplier,
        )

    # ---- switches ----------------------------------------------------------------------------------
    @property
    def fused_modconv(self) -> bool:
        """True: reference per-sample-weight modulated conv; False (default): the faster equivalent."""
        return self.synthesis.fused_modconv

    @fused_modconv.setter
    def fused_modconv(self, value: bool) -> None:
        self.synthesis.fused_modconv = bool(value)

    # ---- split at F ----------------------------------------------------------------------------------
    def features(
        self, ws: torch.Tensor | None = None, *, at: int, styles: Sequence[torch.Tensor] | None = None
    ) -> BaseCode:
        """Run the generator up to the base code of spatial size `at`: BaseCode(f [N, C, at, at], rgb)."""
        pos = self.synthesis.split_position(at)
        styles = self.styles(ws) if styles is None else styles
        x, img = self.synthesis.run(list(styles[: pos + 1]), stop=pos + 1)
        return BaseCode(x, img)

    def synthesize_from(
        self,
        base: BaseCode | torch.Tensor,
        ws: torch.Tensor | None = None,
        *,
        styles: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Finish the image from a base code.

        base: BaseCode, or a bare f [N, C, s, s] (then the RGB skip restarts at block s, as in the authors' code).
        ws: [N, num_ws, w_dim] (entries < M ignored) or the detail code alone [N, num_ws - M, w_dim].
        styles: alternatively, S-space styles for every layer, or for the layers after the split only.
        """
        f, rgb = (base.f, base.rgb) if isinstance(base, BaseCode) else (base, None)
        first, styles = self._styles_after_split(f, ws, styles)
        return self.synthesis.run(styles, start=first, x=f, img=rgb)[1]
