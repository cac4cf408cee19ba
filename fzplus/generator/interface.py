"""What the style-based generators share (StyleGAN2's networks.Generator, StyleGAN1's stylegan1.StyleGAN1Generator):
their sizes, the noise switch, Z -> W mapping and truncation, W+ -> image, the bookkeeping of the split at F and
sampling z, all on top of the `mapping` and `synthesis` networks that a subclass builds.

A subclass's __init__ sets `self.mapping` (z [N, z_dim] -> w [N, w_dim]; z_dim, w_dim, w_avg) and `self.synthesis`
(resolution, num_ws, channels, noise_mode, layer_specs, layer(spec), styles(ws), split_position(at),
_check_ws(ws, n), and a forward(ws, styles=) that returns the image), and `self.config` (plain data that rebuilds the
network; its "architecture" names which StyleGAN it is, see ARCHITECTURES). What differs stays in the subclass: building
those networks, `fused_modconv`, what the styles are, `features` and `synthesize_from`. `StyleSynthesis` is
likewise what the two synthesis networks share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

NOISE_MODES = ("const", "random", "none")
# The architectures the suite builds, by the name a generator's config carries under "architecture", with the name
# messages give them. StyleGAN2's configs have no such key (its files predate StyleGAN1's): a config without one is
# StyleGAN2's, the rule fzplus.generator.load_generator builds by.
ARCHITECTURES = {"stylegan2": "StyleGAN2", "stylegan1": "StyleGAN1"}
DEFAULT_ARCHITECTURE = "stylegan2"


def architecture_of(config: Mapping) -> str:
    """The architecture (a key of ARCHITECTURES) of a generator config (`G.config`, or a checkpoint's)."""
    return config.get("architecture", DEFAULT_ARCHITECTURE)


class LayerSpec(NamedTuple):
    block: int  # resolution of the block
    name: str  # 'conv0' | 'conv1' | 'torgb' (StyleGAN2), 'conv0' | 'conv1' (StyleGAN1)
    w_index: int


class StyleSynthesis(nn.Module):
    """What the synthesis networks share: blocks b4..bR, a schedule `layer_specs` of style-taking layers (which the
    subclass builds, with the blocks) and ws [N, num_ws, w_dim] (or one style per layer) -> image, via the
    subclass's `run`; num_ws = 2 log2(R) - 2."""

    def __init__(self, *, w_dim: int, resolution: int, img_channels: int):
        super().__init__()
        log2 = int(round(math.log2(resolution)))
        assert 2**log2 == resolution and 4 <= resolution, f"resolution must be a power of two >= 4, got {resolution}"
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.num_ws = 2 * log2 - 2
        self.noise_mode = "const"

    def _block_channels(self, channels: dict[int, int]) -> dict[int, int]:
        """The width of each block resolution; ValueError where one is missing or below 1."""
        missing = [r for r in self.block_resolutions if r not in channels or int(channels[r]) < 1]
        if missing:
            raise ValueError(
                "channel widths must be >= 1 for every block resolution; "
                f"missing or zero at {missing} (channels={channels})"
            )
        return {r: int(channels[r]) for r in self.block_resolutions}

    def layer(self, spec: LayerSpec) -> nn.Module:
        return getattr(getattr(self, f"b{spec.block}"), spec.name)

    @property
    def style_dims(self) -> list[int]:
        """Length of each layer's style, in schedule order: its input channels (StyleGAN2's modulation), or
        2 C_l (StyleGAN1's AdaIN: scale then bias)."""
        return [self.layer(s).affine.weight.shape[0] for s in self.layer_specs]

    def styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer styles affine_l(ws[:, w_index(l)]), one tensor per layer: StyleGAN2's S space, [N, C_l], or
        StyleGAN1's AdaIN styles, [N, 2 C_l] (one per ws entry)."""
        self._check_ws(ws, self.num_ws)
        return [self.layer(s).affine(ws[:, s.w_index]) for s in self.layer_specs]

    def _check_split_size(self, at: int) -> None:
        if at not in self.block_resolutions:
            raise ValueError(f"split size must be one of {self.block_resolutions}, got {at}")

    def forward(self, ws: torch.Tensor | None = None, *, styles: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        styles = self.styles(ws) if styles is None else styles
        return self.run(styles)[1]

    def _check_ws(self, ws: torch.Tensor, n: int) -> None:
        assert ws.ndim == 3 and ws.shape[1:] == (n, self.w_dim), (
            f"ws must be [N, {n}, {self.w_dim}], got {tuple(ws.shape)}"
        )


class StyleGenerator(nn.Module):
    """Mapping (Z -> W), truncation, synthesis (W+ or per-layer styles -> image) and the split at F, shared by the
    StyleGAN generators. All tensors batch-first; images are [N, 3, R, R] with values in about [-1, 1]."""

    mapping: nn.Module
    synthesis: nn.Module
    config: dict

    # ---- sizes -------------------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        """Which StyleGAN this is (a key of ARCHITECTURES): what a space plugin is or is not defined for."""
        return architecture_of(self.config)

    @property
    def resolution(self) -> int:
        return self.synthesis.resolution

    @property
    def z_dim(self) -> int:
        return self.mapping.z_dim

    @property
    def w_dim(self) -> int:
        return self.mapping.w_dim

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    # ---- switches ----------------------------------------------------------------------------------
    @property
    def noise_mode(self) -> str:
        return self.synthesis.noise_mode

    @noise_mode.setter
    def noise_mode(self, mode: str) -> None:
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        self.synthesis.noise_mode = mode

    # ---- Z -> W --------------------------------------------------------------------------------------
    def map(
        self, z: torch.Tensor, *, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        """z [N, z_dim] (one code) or [N, num_ws, z_dim] (Z+, one code per layer) -> ws [N, num_ws, w_dim]."""
        if z.ndim == 2:
            ws = self.mapping(z)[:, None].repeat(1, self.num_ws, 1)
        else:
            assert z.ndim == 3 and z.shape[1:] == (self.num_ws, self.z_dim), (
                f"z must be [N, {self.z_dim}] or [N, {self.num_ws}, {self.z_dim}], got {tuple(z.shape)}"
            )
            ws = self.mapping(z.reshape(-1, self.z_dim)).reshape(z.shape[0], self.num_ws, self.w_dim)
        return self.truncate(ws, psi=truncation_psi, cutoff=truncation_cutoff)

    def truncate(self, ws: torch.Tensor, *, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """w_avg + psi (w - w_avg) on layers [0, cutoff) (all layers if cutoff is None); psi = 1 returns ws itself."""
        if psi == 1.0:
            return ws
        n = ws.shape[1] if cutoff is None else min(cutoff, ws.shape[1])
        truncated = (torch.arange(ws.shape[1], device=ws.device) < n)[None, :, None]
        return torch.where(truncated, self.w_avg.to(ws.dtype).lerp(ws, psi), ws)

    # ---- W+ / styles -> image ------------------------------------------------------------------------
    def styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """One style tensor [N, C_l] per layer of `synthesis.layer_specs`: StyleGAN2's S space, or StyleGAN1's
        AdaIN styles [N, 2 C_l] (see the subclass's docstring)."""
        return self.synthesis.styles(ws)

    def synthesize(
        self, ws: torch.Tensor | None = None, *, styles: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] (or the per-layer styles of `styles`) -> image [N, 3, R, R]."""
        return self.synthesis(ws, styles=styles)

    def forward(
        self, z: torch.Tensor, *, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        return self.synthesize(self.map(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff))

    # ---- split at F ----------------------------------------------------------------------------------
    def first_detail_layer(self, at: int) -> int:
        """M: index of the first ws entry that still matters after a split at spatial size `at` (the ws entry of
        the first schedule position after the split)."""
        return self.synthesis.layer_specs[self.synthesis.split_position(at) + 1].w_index

    def base_channels(self, at: int) -> int:
        return self.synthesis.channels[at]

    def _styles_after_split(
        self, f: torch.Tensor, ws: torch.Tensor | None, styles: Sequence[torch.Tensor] | None
    ) -> tuple[int, Sequence[torch.Tensor]]:
        """For `synthesize_from`: checks the base code f [N, C, s, s] and returns (the first schedule position after
        the split at s, the styles of that position and those after it).

        ws: [N, num_ws, w_dim] (entries < M ignored) or the detail code alone [N, num_ws - M, w_dim].
        styles: alternatively, styles for every layer, or for the layers after the split only.
        """
        at = f.shape[-1]
        first = self.synthesis.split_position(at) + 1
        assert f.ndim == 4 and f.shape[1:] == (self.base_channels(at), at, at), (
            f"f must be [N, {self.base_channels(at)}, {at}, {at}], got {tuple(f.shape)}"
        )
        specs = self.synthesis.layer_specs
        if styles is None:
            m = self.first_detail_layer(at)
            if ws.shape[1] == self.num_ws - m:
                ws = torch.cat([ws.new_zeros(ws.shape[0], m, ws.shape[2]), ws], dim=1)
            self.synthesis._check_ws(ws, self.num_ws)
            styles = [self.synthesis.layer(s).affine(ws[:, s.w_index]) for s in specs[first:]]
        elif len(styles) == len(specs):
            styles = list(styles[first:])
        n_tail = len(specs) - first
        assert len(styles) == n_tail, f"expected {n_tail} style tensors after the split, got {len(styles)}"
        return first, styles

    # ---- convenience ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_z(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent codes z ~ N(0, I), from a seed (reproducible across devices: drawn on the CPU)."""
        g = (
            generator
            if generator is not None
            else torch.Generator().manual_seed(seed if seed is not None else np.random.randint(2**31))
        )
        return torch.randn(n, self.z_dim, generator=g).to(self.w_avg.device)
