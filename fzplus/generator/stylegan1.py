"""StyleGAN1 generator (NVIDIA's style-based generator, Karras et al. 2019) in plain PyTorch, batch-first, behind
the interface of the StyleGAN2 `networks.Generator`.

Numerics (NVlabs/stylegan training/networks_stylegan.py, mirrored by genforce models/stylegan_generator.py, the
authors' source of generators):
- mapping: PixelNorm on z, then `mapping_layers` dense layers with leaky ReLU 0.2. Equalised learning rate puts the
  He gain sqrt(2) / sqrt(fan_in) and the lr multiplier (0.01) in the runtime weight scale and the multiplier on the
  bias too; the activation has no gain (StyleGAN2 moved the gain behind the activation, which scales the bias
  differently, so networks.FullyConnected cannot be reused for the mapping).
- synthesis, 2 layers per resolution, each: [2x upsampling, then 3x3 conv, then blur [1,2,1]] or 3x3 conv (or the
  learned 4x4 constant, initialised to ones), noise (one N(0,1) map [r, r] per layer times a learned per-channel
  strength), bias, leaky ReLU 0.2, instance norm (eps 1e-8), AdaIN: x (1 + y_s) + y_b with [y_s, y_b] = A_l(w_l),
  a per-layer affine of gain 1 / sqrt(w_dim). Convs have gain sqrt(2) / sqrt(fan_in); ToRGB is a 1x1 conv of gain
  1 / sqrt(fan_in) plus bias, on the last resolution only (no skips, no tanh).
- upsampling: below 128 px nearest-neighbour 2x then the 3x3 conv; from 128 px ("fused_scale='auto'") one
  stride-2 transposed conv whose 4x4 kernel sums the 3x3 kernel's four one-pixel shifts. The fused layer equals
  nearest + conv with the spatially flipped kernel, not the same kernel, so which layers are fused is part of
  the architecture (`fused_scale` in the config): weights trained one way give other images the other way.
- variant "rosinality" (rosinality/style-based-gan-pytorch model.py): torch's InstanceNorm2d (eps 1e-5), and the
  upsampling layers add their bias before the blur (it is part of their conv), which dims it along the border.

Names. Parameters follow networks.py: `mapping.fc{i}`, `mapping.w_avg` (NVIDIA's dlatent_avg),
`synthesis.b4.const` [C, 4, 4], `synthesis.b{R}.conv{0,1}.{weight, bias, noise_strength, noise_const, affine.*}`
and `synthesis.torgb`. `b4.conv0` is the constant's layer (NVIDIA's 4x4/Const): it has no conv weight.

Schedule. Layer `b{R}.conv{j}` reads ws[2 log2(R) - 4 + j]; num_ws = 2 log2(R) - 2 (14 at 256, 18 at 1024).

Split at F (the authors' StyleGAN1 convention, BDInvert_Release/models/stylegan_generator.py: the base code
replaces a layer's activation just before its instance norm and AdaIN, at layer 2 log2(s) - 4, the first layer of
the s x s block, BDInvert/edit_ganspace.py `basecode_layer`): f is that activation [N, C_s, s, s] and
M = first_detail_layer(s) = 2 log2(s) - 4, since ws[M] still styles f. `synthesize_from(features(ws), ws)` repeats
`synthesize(ws)` exactly. (BDInvert's `features` side reads the layer's output after AdaIN instead and feeds it
through instance norm and AdaIN again, which gives the same image up to eps and the sign of 1 + y_s.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fzplus.generator.interface import LayerSpec, StyleGenerator, StyleSynthesis
from fzplus.generator.networks import BaseCode, FullyConnected, MappingNetwork, default_channels

ARCHITECTURE = "stylegan1"
VARIANTS = ("nvidia", "rosinality")
FUSED_SCALE_AUTO_MIN_RESOLUTION = 128  # networks_stylegan.py upscale2d_conv2d; genforce _AUTO_FUSED_SCALE_MIN_RES
STYLEGAN1_CHANNEL_BASE = 16384  # NVIDIA's fmap_base 8192 at stage log2(R) - 1 = genforce's fmaps_base 16 << 10
LRELU_SLOPE = 0.2
INSTANCE_NORM_EPS = {"nvidia": 1e-8, "rosinality": 1e-5}


def blur_filter() -> torch.Tensor:
    """The normalised [1, 2, 1] x [1, 2, 1] blur that follows every upsampling conv; shape [3, 3]."""
    f = torch.tensor([1.0, 2.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, *, fused: bool) -> torch.Tensor:
    """x [N, I, H, W], weight [O, I, 3, 3] (gain applied) -> [N, O, 2H, 2W].

    fused=False: nearest-neighbour 2x, then the 3x3 conv. fused=True: NVIDIA's upscale2d_conv2d, a stride-2
    transposed conv with the 4x4 kernel that sums the 3x3 kernel's four one-pixel shifts (no blur in either)."""
    if not fused:
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)
    w = F.pad(weight, [1, 1, 1, 1])
    w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]  # [O, I, 4, 4]
    return F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=1)


class MappingLayer(nn.Module):
    """StyleGAN1 dense layer: lrelu(x (W g)^T + b lr), g = lr sqrt(2) / sqrt(in); stored W is N(0, 1) / lr."""

    def __init__(self, in_features: int, out_features: int, *, lr_multiplier: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = lr_multiplier * math.sqrt(2.0) / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain), LRELU_SLOPE)


class StyleGAN1Mapping(MappingNetwork):
    """z [N, z_dim] -> w [N, w_dim]: PixelNorm, then `num_layers` MappingLayers; holds w_avg (dlatent_avg)."""

    @staticmethod
    def make_layer(in_features: int, out_features: int, *, lr_multiplier: float) -> nn.Module:
        return MappingLayer(in_features, out_features, lr_multiplier=lr_multiplier)


class AdaINLayer(nn.Module):
    """One StyleGAN1 layer, in two halves so that the split at F can fall between them:
    `head` (conv, blur, noise, bias, lrelu) and `modulate` (instance norm, AdaIN with the layer's style)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        up: bool = False,
        fused: bool = False,
        variant: str = "nvidia",
    ):
        super().__init__()
        self.up, self.fused, self.out_channels = up, fused, out_channels
        self.norm_eps = INSTANCE_NORM_EPS[variant]
        self.bias_before_blur = up and variant == "rosinality"
        self.is_constant_layer = in_channels == 0  # its input is the learned constant itself: no conv
        if not self.is_constant_layer:
            self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
            self.weight_gain = math.sqrt(2.0) / math.sqrt(in_channels * 9)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.affine = FullyConnected(w_dim, 2 * out_channels)  # gain 1 / sqrt(w_dim), bias init 0: scale 1 + 0
        if up:
            self.register_buffer("blur_filter", blur_filter(), persistent=False)

    def head(self, x: torch.Tensor, *, noise_mode: str = "const") -> torch.Tensor:
        """x [N, I, r/2, r/2] (upsampling layer), [N, I, r, r], or the constant [N, C, 4, 4]
        -> the activation before instance norm [N, C, r, r] (the base code f when the split is here)."""
        bias = self.bias.to(x.dtype)[None, :, None, None]
        if self.up:
            x = upsample_conv2d(x, self.weight * self.weight_gain, fused=self.fused)
            if self.bias_before_blur:
                x = x + bias
            kernel = self.blur_filter.to(x.dtype)[None, None].expand(x.shape[1], 1, 3, 3)
            x = F.conv2d(x, kernel, padding=1, groups=x.shape[1])
        elif not self.is_constant_layer:
            x = F.conv2d(x, self.weight * self.weight_gain, padding=1)
        strength = self.noise_strength.to(x.dtype)[None, :, None, None]
        if noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * strength
        elif noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * strength
        if not self.bias_before_blur:
            x = x + bias
        return F.leaky_relu(x, LRELU_SLOPE)

    def modulate(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Instance norm, then AdaIN: x (1 + y_s) + y_b with style [N, 2C] = [y_s, y_b]; x [N, C, r, r]."""
        assert style.shape == (x.shape[0], 2 * self.out_channels), (
            f"style must be [{x.shape[0]}, {2 * self.out_channels}], got {tuple(style.shape)}"
        )
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * (x.square().mean(dim=(2, 3), keepdim=True) + self.norm_eps).rsqrt()
        scale, shift = style[:, :, None, None].to(x.dtype).chunk(2, dim=1)
        return x * (1 + scale) + shift


class ToRGB(nn.Module):
    """1x1 conv of gain 1 / sqrt(in) plus bias, no style (NVIDIA's ToRGB_lod0)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, (self.weight * self.weight_gain).to(x.dtype), self.bias.to(x.dtype))


class StyleGAN1Block(nn.Module):
    """Container of one resolution's two layers (and the constant at 4x4); the schedule runs them."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, resolution: int, fused: bool, variant: str):
        super().__init__()
        if in_channels == 0:
            self.const = nn.Parameter(torch.ones(out_channels, resolution, resolution))
        layer = dict(w_dim=w_dim, resolution=resolution, variant=variant)
        self.conv0 = AdaINLayer(in_channels, out_channels, up=in_channels > 0, fused=fused, **layer)
        self.conv1 = AdaINLayer(out_channels, out_channels, **layer)


class StyleGAN1Synthesis(StyleSynthesis):
    """ws [N, num_ws, w_dim] (or AdaIN styles, one [N, 2 C_l] per layer) -> image [N, img_channels, R, R].

    `styles` are the AdaIN styles A_l(ws[:, l]), one [N, 2 C_l] tensor per layer (= per ws entry); `style_dims`
    their lengths 2 C_l (scale then bias)."""

    def __init__(
        self,
        *,
        w_dim: int,
        resolution: int,
        channels: dict[int, int],
        img_channels: int = 3,
        fused_scale: bool | str = "auto",
        variant: str = "nvidia",
    ):
        super().__init__(w_dim=w_dim, resolution=resolution, img_channels=img_channels)
        if not (fused_scale == "auto" or isinstance(fused_scale, bool)):
            raise ValueError(f"fused_scale must be 'auto', True or False, got {fused_scale!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.channels = self._block_channels(channels)
        specs = []
        for k, r in enumerate(self.block_resolutions):
            fused = fused_scale is True or (fused_scale == "auto" and r >= FUSED_SCALE_AUTO_MIN_RESOLUTION)
            in_ch = 0 if r == 4 else self.channels[r // 2]
            block = StyleGAN1Block(in_ch, self.channels[r], w_dim=w_dim, resolution=r, fused=fused, variant=variant)
            setattr(self, f"b{r}", block)
            specs += [LayerSpec(r, "conv0", 2 * k), LayerSpec(r, "conv1", 2 * k + 1)]
        self.layer_specs: tuple[LayerSpec, ...] = tuple(specs)
        self.torgb = ToRGB(self.channels[resolution], img_channels)

    def layer(self, spec: LayerSpec) -> AdaINLayer:
        return super().layer(spec)

    def split_position(self, at: int) -> int:
        """Schedule index of the last layer that runs whole before the split at spatial size `at`: the split
        falls inside the next layer (after its head, before its AdaIN), so positions > this one take their
        styles after the split. -1 at 4x4, where the split is inside the constant's layer."""
        self._check_split_size(at)
        return 2 * int(math.log2(at)) - 5

    def constant(self, like: torch.Tensor) -> torch.Tensor:
        """The learned constant for a batch as large as `like` (any [N, ...] tensor): [N, C_4, 4, 4]."""
        return self.b4.const[None].expand(like.shape[0], *self.b4.const.shape).to(like.dtype)

    def run(
        self,
        styles: Sequence[torch.Tensor],
        *,
        start: int = 0,
        stop: int | None = None,
        x: torch.Tensor | None = None,
        img: torch.Tensor | None = None,
    ):
        """Run whole layers [start, stop) with one style per position; returns (x, img). img is the ToRGB output
        when the run reaches the last layer, else None (StyleGAN1 has no RGB skip, so `img` must be None)."""
        stop = len(self.layer_specs) if stop is None else stop
        assert len(styles) == stop - start, f"expected {stop - start} style tensors, got {len(styles)}"
        assert img is None, "StyleGAN1 has no RGB skip image to carry on"
        if x is None:
            assert start == 0 and styles, "a run without x must start at the constant (start=0)"
            x = self.constant(styles[0])
        for spec, s in zip(self.layer_specs[start:stop], styles):
            layer = self.layer(spec)
            x = layer.modulate(layer.head(x, noise_mode=self.noise_mode), s)
        return x, (self.torgb(x) if stop == len(self.layer_specs) else None)


class StyleGAN1Generator(StyleGenerator):
    """StyleGAN1 generator: mapping (Z -> W), truncation, synthesis (W+ or AdaIN styles -> image), split at F.

    The interface is networks.Generator's (what they share is interface.StyleGenerator's); where StyleGAN2 has
    something StyleGAN1 lacks:
    - `styles` / `styles=` arguments: StyleGAN1 has no modulation styles. They are the AdaIN styles
      [y_s, y_b] = A_l(w_l), [N, 2 C_l] per layer, the counterpart genforce calls Y space (its
      `set_space_of_latent('y')`); like StyleGAN2's S they are affine in w and feed one layer each. There are
      num_ws of them (no ToRGB style). Whether S-space plugins are defined on them is the plugins' decision.
    - `fused_modconv`: there is no modulated conv; it reads False and setting True raises ValueError.
    - `features(...).rgb` is always None and `synthesize_from` refuses an RGB skip image (no skips).
    Truncation defaults to psi 1 like networks.Generator; NVIDIA's sampling defaults are psi 0.7 on the first
    8 layers (G_style truncation_psi, truncation_cutoff), which `map(z, truncation_psi=0.7,
    truncation_cutoff=8)` reproduces.

    `config` (plain data) rebuilds the network with StyleGAN1Generator(**config) and names its architecture.
    All tensors batch-first; images [N, 3, R, R] in about [-1, 1].
    """

    def __init__(
        self,
        *,
        architecture: str = ARCHITECTURE,
        resolution: int = 1024,
        z_dim: int = 512,
        w_dim: int = 512,
        img_channels: int = 3,
        channels: dict[int, int] | None = None,
        channel_base: int = STYLEGAN1_CHANNEL_BASE,
        channel_max: int = 512,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        fused_scale: bool | str = "auto",
        variant: str = "nvidia",
    ):
        super().__init__()
        if architecture != ARCHITECTURE:
            raise ValueError(f"StyleGAN1Generator builds architecture {ARCHITECTURE!r}, not {architecture!r}")
        channels = (
            default_channels(resolution, channel_base=channel_base, channel_max=channel_max)
            if channels is None
            else {int(k): int(v) for k, v in channels.items()}
        )
        self.config = dict(
            architecture=ARCHITECTURE,
            resolution=resolution,
            z_dim=z_dim,
            w_dim=w_dim,
            img_channels=img_channels,
            channels=dict(channels),
            mapping_layers=mapping_layers,
            mapping_lr_multiplier=mapping_lr_multiplier,
            fused_scale=fused_scale,
            variant=variant,
        )
        self.synthesis = StyleGAN1Synthesis(
            w_dim=w_dim,
            resolution=resolution,
            channels=channels,
            img_channels=img_channels,
            fused_scale=fused_scale,
            variant=variant,
        )
        self.mapping = StyleGAN1Mapping(
            z_dim=z_dim,
            w_dim=w_dim,
            num_ws=self.synthesis.num_ws,
            num_layers=mapping_layers,
            lr_multiplier=mapping_lr_multiplier,
        )

    # ---- switches ----------------------------------------------------------------------------------
    @property
    def fused_modconv(self) -> bool:
        """Always False: StyleGAN1 has no modulated convolution to run another way."""
        return False

    @fused_modconv.setter
    def fused_modconv(self, value: bool) -> None:
        if value:
            raise ValueError("StyleGAN1 has no modulated convolution (it styles by AdaIN); fused_modconv stays False")

    # ---- split at F ----------------------------------------------------------------------------------
    def base_channels(self, at: int) -> int:
        self.synthesis.split_position(at)  # a clear error for a size without a split
        return super().base_channels(at)

    def features(
        self, ws: torch.Tensor | None = None, *, at: int, styles: Sequence[torch.Tensor] | None = None
    ) -> BaseCode:
        """Run the generator up to the base code of spatial size `at`: BaseCode(f [N, C, at, at], None)."""
        pos = self.synthesis.split_position(at) + 1
        styles = self.styles(ws) if styles is None else styles
        x = self.synthesis.constant(styles[0])
        if pos > 0:
            x, _ = self.synthesis.run(list(styles[:pos]), stop=pos, x=x)
        f = self.synthesis.layer(self.synthesis.layer_specs[pos]).head(x, noise_mode=self.noise_mode)
        return BaseCode(f, None)

    def synthesize_from(
        self,
        base: BaseCode | torch.Tensor,
        ws: torch.Tensor | None = None,
        *,
        styles: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Finish the image from a base code: instance norm and AdaIN of layer M, then the layers after it.

        base: BaseCode (its rgb must be None) or a bare f [N, C, s, s].
        ws: [N, num_ws, w_dim] (entries < M ignored) or the detail code alone [N, num_ws - M, w_dim].
        styles: alternatively, AdaIN styles for every layer, or for layers >= M only.
        """
        if isinstance(base, BaseCode) and base.rgb is not None:
            raise ValueError("StyleGAN1 has no RGB skip: pass a BaseCode with rgb=None, or the bare f")
        f = base.f if isinstance(base, BaseCode) else base
        pos, styles = self._styles_after_split(f, ws, styles)  # pos: layer M, whose AdaIN comes after the split
        x = self.synthesis.layer(self.synthesis.layer_specs[pos]).modulate(f, styles[0])
        return self.synthesis.run(list(styles[1:]), start=pos + 1, x=x)[1]
