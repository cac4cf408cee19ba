"""The three families every paper space belongs to; each plugin module instantiates one of them.

Facts from the authors' scripts (raven38/hypershpere-gan-inversion, BDInvert_Release/BDInvert/invert*.py)
and the decisions of SPEC §4:
- Z family (Z, Z+, F/Z, F/Z+): codes start as seeded N(0, I) draws normalised to the sphere of radius
  sqrt(512) and are retracted to it after every step (paper Eq. 5). The authors' Z+ scripts keep the
  stored variable off the sphere and rely on the mapping's PixelNorm; their Z / F/Z scripts even replace
  that PixelNorm by the identity, so F/Z is unconstrained there. We keep every Z code on the sphere, as
  the paper defines the spaces. Their scripts truncate the mapped ws (psi 0.7, first 8 layers): here
  `applies_truncation` is True and the psi/cutoff come from the context (default psi 1 = off).
- W family (W, W+, W+(P_N), F/W, F/W+, F/W+(P_N)): codes start at w_avg, the P_N spaces at the code whose
  p_N is 0 (fzplus.pn_stats: w_avg whitens to ~1e4 on a generator whose W is low-dimensional). The single-code scripts
  (invert_w*.py) truncate the code, the per-layer ones (invert_wp*.py) do not; we follow that. P_N
  spaces add lambda_pn * mean(p_N^2) (BDInvert: 0.01; config inversion.pn). BDInvert applies it to all 18 ws of F/W+
  even though layers < M never reach the image; we regularise the codes that exist (layers >= M in F spaces).
  On StyleGAN1, whose mapping's last activation has no sqrt(2) gain, fzplus.pn_stats' p is the pre-activation
  divided by sqrt(2); whitening removes a uniform scale, so p_N, the regulariser and the start code are the same.
- S family (S, F/S): one style vector per synthesis layer fed, starting at the styles of w_avg. No
  truncation (there is no w). Edits take a W-domain direction through each layer's affine map. The styles are
  StyleGAN2's modulation styles or StyleGAN1's AdaIN styles (spaces/s.py says why S is defined on both); their
  lengths come from `synthesis.style_dims`.
In F spaces the codes feed only layers >= M = first_detail_layer(base_size); f starts at f0 (encoder
output, else the generator's mean feature map), and the engine adds lambda_reg * mean((f - f0)^2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fzplus.settings import setting

from .base import (
    GeneratorInputs,
    LatentSpace,
    SpaceContext,
    base_code_init,
    retract_to_sphere,
    sample_ws,
    with_true_base_code,
)


class _LayerCodeSpace(LatentSpace):
    """Spaces whose variable is one 512-d code for all layers fed ([N, D]) or one per layer ([N, L, D])."""

    code_key = ""

    def __init__(
        self, *, name: str, slug: str, per_layer: bool, uses_base_code: bool, applies_truncation: bool, description: str
    ):
        self.name, self.slug, self.description = name, slug, description
        self.per_layer, self.uses_base_code, self.applies_truncation = per_layer, uses_base_code, applies_truncation
        self.variables = ("f", self.code_key) if uses_base_code else (self.code_key,)

    def code_shape(self, ctx: SpaceContext) -> tuple[int, ...]:
        dim = ctx.generator.z_dim if self.code_key == "z" else ctx.generator.w_dim
        return (len(self.edited_layers(ctx)), dim) if self.per_layer else (dim,)

    def with_base_code(
        self, codes: dict[str, torch.Tensor], targets: torch.Tensor, ctx: SpaceContext, encoder
    ) -> dict[str, torch.Tensor]:
        if self.uses_base_code:
            codes["f"] = base_code_init(targets, ctx, encoder=encoder)
        return codes

    def full_ws(self, w: torch.Tensor, ctx: SpaceContext) -> torch.Tensor:
        """w [N, D] or [N, L, D] on the layers fed -> ws [N, num_ws, D], truncated if the space truncates.

        Layers before M (F spaces) are filled with w_avg: synthesize_from ignores them, and the
        truncation cutoff keeps counting layers from 0 as in the authors' code.
        """
        G = ctx.generator
        n = w.shape[0]
        if w.ndim == 2:
            ws = w[:, None].expand(n, G.num_ws, w.shape[-1])
        else:
            layers = self.edited_layers(ctx)
            assert w.shape[1] == len(layers), (
                f"{self.name}: expected {len(layers)} per-layer codes, got {tuple(w.shape)}"
            )
            ws = torch.cat([G.w_avg.to(w.dtype).expand(n, layers.start, w.shape[-1]), w], dim=1)
        if self.applies_truncation:
            ws = G.truncate(ws, psi=ctx.truncation_psi, cutoff=ctx.truncation_cutoff)
        return ws

    def shifted(self, codes: dict[str, torch.Tensor], direction: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
        out = dict(codes)
        out[self.code_key] = codes[self.code_key] + alpha * direction.to(codes[self.code_key])
        return out


class ZSpace(_LayerCodeSpace):
    """Codes z on the sphere of radius sqrt(512), mapped to W by the mapping network."""

    code_key = "z"
    domain = "Z"

    def __init__(self, *, name: str, slug: str, per_layer: bool, uses_base_code: bool, description: str):
        super().__init__(
            name=name,
            slug=slug,
            per_layer=per_layer,
            uses_base_code=uses_base_code,
            applies_truncation=True,
            description=description,
        )

    def init_codes(self, targets, ctx, *, image_seeds: Sequence[int], encoder=None):
        shape = self.code_shape(ctx)
        # Drawn on the CPU from a per-image seed: the same start on every device and in every batch.
        z = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in image_seeds])
        codes = {"z": retract_to_sphere(z).to(targets.device, targets.dtype)}
        return self.with_base_code(codes, targets, ctx, encoder)

    def generator_inputs(self, codes, ctx):
        G, z = ctx.generator, codes["z"]
        w = G.mapping(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], G.w_dim)
        return GeneratorInputs(ws=self.full_ws(w, ctx), f=codes.get("f"))

    def codes_for_sample(self, z, ctx):
        # The mapping normalises z's second moment first, so the retracted z maps to the same w.
        code = retract_to_sphere(z)
        if self.per_layer:
            code = code[:, None].expand(-1, len(self.edited_layers(ctx)), -1).clone()
        return with_true_base_code({"z": code}, sample_ws(z, ctx), ctx, uses_base_code=self.uses_base_code)

    def project_(self, codes):
        codes["z"].copy_(retract_to_sphere(codes["z"]))

    def apply_direction(self, codes, direction, alpha, ctx):
        out = self.shifted(codes, direction, alpha)
        # A zero step leaves the codes where they are, on the sphere; retracting again would only add
        # round-off, and alpha = 0 must reproduce the inversion exactly.
        if alpha != 0:
            out["z"] = retract_to_sphere(out["z"])
        return out


@dataclass(frozen=True)
class PNSettings:
    """the P_N spaces' regulariser (BDInvert)"""

    lambda_pn: float = setting(0.01, minimum=0, description="weight of mean(p_N^2) (BDInvert: 0.01)")


class WSpace(_LayerCodeSpace):
    """Codes w in W, starting at w_avg; optionally regularised in the whitened space P_N (settings inversion.pn)."""

    code_key = "w"
    domain = "W"

    def __init__(
        self,
        *,
        name: str,
        slug: str,
        per_layer: bool,
        uses_base_code: bool,
        description: str,
        pn_regularised: bool = False,
    ):
        super().__init__(
            name=name,
            slug=slug,
            per_layer=per_layer,
            uses_base_code=uses_base_code,
            applies_truncation=not per_layer,
            description=description,
        )
        self.needs_pn_stats = pn_regularised
        if pn_regularised:
            self.settings_key, self.settings_class = "pn", PNSettings

    def init_codes(self, targets, ctx, *, image_seeds: Sequence[int], encoder=None):
        start = self.pn_stats(ctx).start_w if self.needs_pn_stats else ctx.generator.w_avg
        start = start.to(targets.device, targets.dtype)
        codes = {"w": start.expand(targets.shape[0], *self.code_shape(ctx)).clone()}
        return self.with_base_code(codes, targets, ctx, encoder)

    def generator_inputs(self, codes, ctx):
        return GeneratorInputs(ws=self.full_ws(codes["w"], ctx), f=codes.get("f"))

    def codes_for_sample(self, z, ctx):
        # A single code is truncated by full_ws when the space renders; per-layer codes are the truncated ws.
        ws = sample_ws(z, ctx)
        code = ws[:, self.edited_layers(ctx)] if self.per_layer else ctx.generator.mapping(z)
        return with_true_base_code({"w": code}, ws, ctx, uses_base_code=self.uses_base_code)

    def regularizer(self, codes, ctx):
        if not self.needs_pn_stats:
            return super().regularizer(codes, ctx)
        return self.settings_for(ctx.settings).lambda_pn * self.pn_stats(ctx).regularizer(codes["w"])

    def pn_stats(self, ctx):
        if ctx.pn_stats is None:
            raise ValueError(
                f"space {self.name!r} needs P_N statistics: compute them once with "
                f"fzplus.pn_stats.compute_pn_stats(generator) (or load the saved .npz) and pass pn_stats="
            )
        return ctx.pn_stats

    def apply_direction(self, codes, direction, alpha, ctx):
        return self.shifted(codes, direction, alpha)


class SSpace(LatentSpace):
    """Per-layer style vectors (StyleSpace), concatenated into one variable s [N, sum of style_dims]: C_l per layer
    and toRGB layer on StyleGAN2, 2 C_l (AdaIN scale then bias) per layer on StyleGAN1."""

    domain = "W"
    applies_truncation = False

    def __init__(self, *, name: str, slug: str, uses_base_code: bool, description: str):
        self.name, self.slug, self.description, self.uses_base_code = name, slug, description, uses_base_code
        self.variables = ("f", "s") if uses_base_code else ("s",)

    def positions(self, ctx: SpaceContext) -> range:
        """Schedule positions (synthesis.layer_specs) whose styles are free: all, or those after the split."""
        synthesis = ctx.generator.synthesis
        start = synthesis.split_position(ctx.base_size) + 1 if self.uses_base_code else 0
        return range(start, len(synthesis.layer_specs))

    def style_dims(self, ctx: SpaceContext) -> list[int]:
        dims = ctx.generator.synthesis.style_dims
        return [dims[p] for p in self.positions(ctx)]

    def init_codes(self, targets, ctx, *, image_seeds: Sequence[int], encoder=None):
        G = ctx.generator
        with torch.no_grad():
            styles = G.styles(G.w_avg[None, None].repeat(1, G.num_ws, 1))
        s = torch.cat([styles[p] for p in self.positions(ctx)], dim=1).to(targets.device, targets.dtype)
        codes = {"s": s.expand(targets.shape[0], -1).clone()}
        if self.uses_base_code:
            codes["f"] = base_code_init(targets, ctx, encoder=encoder)
        return codes

    def codes_for_sample(self, z, ctx):
        ws = sample_ws(z, ctx)
        styles = ctx.generator.styles(ws)
        codes = {"s": torch.cat([styles[p] for p in self.positions(ctx)], dim=1)}
        return with_true_base_code(codes, ws, ctx, uses_base_code=self.uses_base_code)

    def generator_inputs(self, codes, ctx):
        styles = list(torch.split(codes["s"], self.style_dims(ctx), dim=1))
        return GeneratorInputs(styles=styles, f=codes.get("f"))

    def apply_direction(self, codes, direction, alpha, ctx):
        # style_l = A_l w + b_l is affine in w, so moving w by alpha n moves style_l by exactly alpha A_l n.
        synthesis = ctx.generator.synthesis
        n = direction.to(codes["s"])
        parts = []
        for p in self.positions(ctx):
            affine = synthesis.layer(synthesis.layer_specs[p]).affine
            parts.append(n @ (affine.weight * affine.weight_gain).to(n).t())
        out = dict(codes)
        out["s"] = codes["s"] + alpha * torch.cat(parts)
        return out
