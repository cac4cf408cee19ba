"""SAM: spatially adaptive multilayer inversion (Parmar et al., CVPR 2022, adobe-research/sam_inversion), a
method built on a per-layer latent space: the pivot's codes plus additive feature residuals after some
synthesis blocks, each residual acting only on the segments that chose it.

Facts from SAM's code and the choices made here (each a deviation only where it must be):
- Latents. SAM: W+ and residuals after the 16, 32, 64 and 128 px blocks of a 1024 generator, added to the
  block's features after its toRGB. Here the pivot is W+ (SAM) or Z+ on the sphere (SAM w/ Z+), and the
  residual sizes are `residual_sizes` (config inversion.sam; default SAM's where the generator has them,
  SAMSettings.sizes_for; the mini profile: 8, 16 and 32 px).
- Start. SAM starts W+ at e4e's output and the residuals at zero. Here the pivot IS the suite's W+ (Z+)
  inversion, bitwise that row of Table 1 and taken from its job (as PTI's pivot), playing e4e's part.
- Segments. SAM: a BiSeNet face parser. Here fzplus.faces.parsing (dlib landmarks; see there).
- Invertibility. SAM predicts, per candidate latent, the spatial LPIPS map between that single latent's
  reconstruction and the target, with a DeepLab network trained on single-latent inversions. Here it is
  MEASURED: each candidate "pivot + one unmasked residual at size r" is inverted from the pivot with SAM's
  loss and schedule, and its per-pixel perceptual distance map taken (ImageLosses.maps); the pivot's own map
  is its reconstruction's. Exact for the image at hand, at len(residual_sizes) extra inversions per image; a
  trained predictor would need those inversions for thousands of generated images plus its training, which
  the 16-image mini run never recovers.
- Selection (`select_latents`): per segment, scan from the finest residual to the pivot; the last whose
  mean map value is <= tau wins, the finest if none is. tau: SAM 0.225 in LPIPS-VGG units at 256 px;
  the profile's perceptual distance has its own scale, so tau is a setting (the mini value is measured).
- Masks. SAM resizes each latent's binary mask with Lanczos (soft values). Here the mask at size r is
  binary: the area-mean of the chosen region >= 0.5. Binary masks make the edit below at alpha = 0 equal the
  inversion exactly.
- Optimisation: all latents jointly, Adam (peak lr 0.05, cosine ramp-down over the last 25 % and linear
  ramp-up over the first 5 % of steps: SAM's), loss lambda_mse MSE + lambda_per perceptual (SAM: 1, 1; the
  profile's perceptual distance at its size) + lambda_delta sum_i ||c_i - c_0|| (c: the pivot's per-layer
  code, w or z; SAM 1e-3) + lambda_residual sum_r mean(dF_r^2) (SAM 5). SAM's Mahalanobis term on
  leaky_relu(w, 5) (weight 1e-8) is left out: at that weight it is ~1e-4 of the image loss here, and SAM
  w/ Z+ keeps z on the sphere instead (retracted after every step, as every Z space).
- Edits (SAM's edit_image): the pivot code moves by alpha d; at each residual block the regions that chose
  that residual keep their unedited features (x <- x (1 - m) + F_unedited m). The unedited code travels
  with the edited codes as `<key>_unedited`.

Codes: the pivot's variable (w or z [N, L, 512]) plus `residuals` [N, sum_r C_r r^2] (flat, finest last),
`residual_sizes` [N, k] (the same sizes on every row, so that codes stay batch-first), `latent_map`
[N, R, R] uint8 (per pixel, the index of the chosen candidate: 0 = finest residual, k = the pivot) and
`segment_distances` [N, k + 1, len(SEGMENTS)] (each candidate's mean map value per segment; NaN where a
segment is empty).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fzplus.optimiser import Descent, LearningRate, StoppingSettings, descend
from fzplus.settings import setting

from ._families import _LayerCodeSpace
from .base import LatentSpace, SpaceContext

REFINED = ("residuals", "residual_sizes", "latent_map", "segment_distances")


@dataclass(frozen=True)
class SAMSettings(StoppingSettings):
    """the second stage of SAM and SAM w/ Z+ (spaces/_sam.py); defaults are SAM's (sam_inv_optimization.py),
    for a 1024 generator"""

    tau: float = setting(
        0.225,
        minimum=0,
        description="a segment takes the coarsest candidate whose mean distance is <= tau "
        "(SAM: 0.225, LPIPS-VGG at 256 px)",
    )
    residual_sizes: tuple[int, ...] | None = setting(
        None,
        minItems=1,
        uniqueItems=True,
        items={"enum": [4, 8, 16, 32, 64, 128, 256, 512]},
        description="blocks after which a masked feature residual is added; "
        "null = SAM's 16, 32, 64, 128 where the generator has them below its size, else every inner block above 4 px",
    )
    steps: int = setting(1001, minimum=0, description="steps of each single-latent inversion and of the joint one")
    lr: float = setting(0.05, exclusiveMinimum=0, description="peak lr of SAM's cosine ramp")
    lr_rampdown: float = setting(0.25, exclusiveMinimum=0, maximum=1)
    lr_rampup: float = setting(0.05, exclusiveMinimum=0, maximum=1)
    lambda_mse: float = setting(1.0, minimum=0)
    lambda_per: float = setting(1.0, minimum=0)
    lambda_delta: float = setting(1e-3, minimum=0, description="weight of sum_i |c_i - c_0| over the pivot's layers")
    lambda_residual: float = setting(5.0, minimum=0, description="weight of sum_r mean(dF_r^2)")
    parser: str = setting(
        "dlib-landmarks", description="face parser (fzplus.faces.parsing.PARSERS): the segments a latent is chosen for"
    )

    def __post_init__(self):
        if self.residual_sizes is not None:  # finest last, as the codes store them
            object.__setattr__(self, "residual_sizes", tuple(sorted(int(r) for r in self.residual_sizes)))

    def sizes_for(self, generator) -> tuple[int, ...]:
        """The residual sizes: as set, else SAM's 16..128 px where the generator has them below its output
        size (all four at 1024), else every inner block above 4 px (a small generator)."""
        if self.residual_sizes is not None:
            return self.residual_sizes
        inner = [r for r in generator.synthesis.block_resolutions if 4 < r < generator.resolution]
        return tuple(r for r in inner if 16 <= r <= 128) or tuple(inner)

    def learning_rate(self) -> LearningRate:
        return LearningRate(peak=self.lr, rampup=self.lr_rampup, rampdown=self.lr_rampdown)


def select_latents(
    maps: torch.Tensor, segments: torch.Tensor, *, tau: float, segment_count: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's selection rule. maps [N, K, R, R]: each candidate's per-pixel distance, finest residual first and
    the pivot last; segments [N, R, R] int labels in [0, S). Per image and segment, the candidates are scanned
    from the finest to the pivot and the last whose segment mean is <= tau wins (the finest if none is).
    Returns (latent_map [N, R, R] int64 candidate indices, segment means [N, K, S], NaN for empty segments);
    S = segment_count (default: the largest label + 1)."""
    assert maps.ndim == 4 and segments.shape == (maps.shape[0], *maps.shape[2:]), (
        f"maps must be [N, K, R, R] and segments [N, R, R], got {tuple(maps.shape)} and {tuple(segments.shape)}"
    )
    n, k = maps.shape[:2]
    count = int(segments.max()) + 1 if segment_count is None else int(segment_count)
    onehot = F.one_hot(segments.long(), count).permute(0, 3, 1, 2).to(maps.dtype)  # [N, S, R, R]
    area = onehot.sum(dim=(2, 3))  # [N, S]
    means = torch.einsum("nkhw,nshw->nks", maps, onehot) / area[:, None]  # NaN where a segment is empty
    below = means <= tau
    order = torch.arange(k, device=maps.device)[None, :, None]
    chosen = torch.where(below, order, torch.zeros_like(order)).amax(dim=1)  # [N, S]
    latent_map = torch.gather(chosen, 1, segments.long().flatten(1)).view_as(segments)
    return latent_map, means


def residual_synthesis(
    generator,
    ws: torch.Tensor,
    residuals: Mapping[int, torch.Tensor],
    masks: Mapping[int, torch.Tensor],
    *,
    keep: Mapping[int, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Images [N, 3, R, R] of ws [N, num_ws, D] with x <- x + dF_r m_r after the block of size r (after its
    toRGB, as SAM), or, given keep (an edit), x <- x (1 - m_r) + keep_r m_r. Also returns each block's
    features after that step {r: [N, C_r, r, r]} (what an edit keeps). residuals {r: [N, C_r, r, r]}, masks
    {r: [N, 1, r, r]} in {0, 1}."""
    synthesis = generator.synthesis
    specs = synthesis.layer_specs
    styles = generator.styles(ws)
    x = img = None
    start, features = 0, {}
    for r in sorted(residuals):
        stop = max(i for i, s in enumerate(specs) if s.block == r) + 1
        x, img = synthesis.run(styles[start:stop], start=start, stop=stop, x=x, img=img)
        m = masks[r].to(x.dtype)
        x = x * (1 - m) + keep[r] * m if keep is not None else x + residuals[r] * m
        features[r], start = x, stop
    if start < len(specs):
        x, img = synthesis.run(styles[start:], start=start, x=x, img=img)
    return img, features


class SAMSpace(LatentSpace):
    """A per-layer pivot space (W+ or Z+) plus SAM's masked feature residuals (see the module doc)."""

    refined_variables = REFINED
    settings_key, settings_class = "sam", SAMSettings
    figures = ("latent_maps",)

    def __init__(self, *, name: str, slug: str, pivot: LatentSpace, description: str):
        if (
            pivot.uses_base_code
            or len(pivot.variables) != 1
            or not (isinstance(pivot, _LayerCodeSpace) and pivot.per_layer)
        ):
            raise ValueError(
                f"{name}: the pivot must be a per-layer whole-generator space (W+, Z+), got {pivot.name!r}"
            )
        self.name, self.slug, self.description, self.pivot = name, slug, description, pivot
        self.domain, self.variables = pivot.domain, tuple(pivot.variables)
        self.code_key = pivot.variables[0]
        self.uses_base_code, self.applies_truncation = False, pivot.applies_truncation

    @property
    def unedited_key(self) -> str:
        return f"{self.code_key}_unedited"

    # ---- the pivot space's behaviour ---------------------------------------------------------------
    def init_codes(self, targets, ctx, *, image_seeds: Sequence[int], encoder=None):
        return self.pivot.init_codes(targets, ctx, image_seeds=image_seeds, encoder=encoder)

    def generator_inputs(self, codes, ctx):
        return self.pivot.generator_inputs({self.code_key: codes[self.code_key]}, ctx)

    def project_(self, codes):
        self.pivot.project_(codes)

    def regularizer(self, codes, ctx):
        return self.pivot.regularizer({self.code_key: codes[self.code_key]}, ctx)

    def edited_layers(self, ctx):
        return self.pivot.edited_layers(ctx)

    def apply_direction(self, codes, direction, alpha, ctx):
        moved = self.pivot.apply_direction({self.code_key: codes[self.code_key]}, direction, alpha, ctx)
        return {**codes, **moved, self.unedited_key: codes.get(self.unedited_key, codes[self.code_key])}

    def codes_for_sample(self, z, ctx):
        codes = self.pivot.codes_for_sample(z, ctx)
        n, size = z.shape[0], ctx.generator.resolution
        from fzplus.faces.parsing import SEGMENTS

        return {
            **codes,
            "residuals": z.new_zeros(n, 0),
            "residual_sizes": torch.zeros(n, 0, dtype=torch.long, device=z.device),
            "latent_map": torch.zeros(n, size, size, dtype=torch.uint8, device=z.device),
            "segment_distances": z.new_zeros(n, 1, len(SEGMENTS)),
        }

    # ---- residuals, masks, rendering ---------------------------------------------------------------
    @staticmethod
    def residual_shapes(generator, sizes: Sequence[int]) -> dict[int, tuple[int, int, int]]:
        blocks = generator.synthesis.block_resolutions
        bad = [r for r in sizes if r not in blocks or r >= generator.resolution]
        if bad:
            raise ValueError(
                f"SAM residual sizes {bad} are not inner block sizes of this generator {list(blocks[:-1])}; "
                "set inversion.sam.residual_sizes"
            )
        return {r: (generator.synthesis.channels[r], r, r) for r in sorted(sizes)}

    def unpack(self, codes, generator) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """(residuals {r: [N, C, r, r]}, binary masks {r: [N, 1, r, r]}) from the flat codes."""
        sizes = [int(r) for r in codes["residual_sizes"][0].tolist()] if codes["residual_sizes"].numel() else []
        shapes = self.residual_shapes(generator, sizes)
        flat = codes["residuals"]
        parts = flat.split([math.prod(s) for s in shapes.values()], dim=1) if shapes else []
        residuals = {r: p.reshape(flat.shape[0], *shape) for (r, shape), p in zip(shapes.items(), parts)}
        return residuals, latent_masks(codes["latent_map"], sizes)

    def render(self, codes, ctx):
        if "residuals" not in codes:  # during the pivot's own inversion
            return self.pivot.render(codes, ctx)
        G = ctx.generator
        residuals, masks = self.unpack(codes, G)
        ws = self.generator_inputs(codes, ctx).ws
        if self.unedited_key not in codes:
            return residual_synthesis(G, ws, residuals, masks)[0]
        unedited = self.generator_inputs({self.code_key: codes[self.unedited_key]}, ctx).ws
        kept = residual_synthesis(G, unedited, residuals, masks)[1]
        return residual_synthesis(G, ws, residuals, masks, keep=kept)[0]

    # ---- the SAM stage -----------------------------------------------------------------------------
    def _optimise(self, code, residuals, masks, ctx, image_losses, s: SAMSettings, *, progress: bool, desc: str):
        """(code, residuals) optimised with SAM's loss and schedule (fzplus.optimiser.descend); returns
        them and the Descent."""
        variables = {"code": code.detach().clone().requires_grad_(True)}
        variables.update({f"F{r}": t.detach().clone().requires_grad_(True) for r, t in residuals.items()})

        def loss(view: dict, idx: torch.Tensor) -> dict:
            ws = self.generator_inputs({self.code_key: view["code"]}, ctx).ws
            mine = {r: view[f"F{r}"] for r in residuals}
            images = residual_synthesis(ctx.generator, ws, mine, {r: m[idx] for r, m in masks.items()})[0]
            mse, per = image_losses(images, idx)
            delta = (view["code"][:, 1:] - view["code"][:, :1]).norm(dim=-1).sum(dim=1)
            size = sum(t.square().flatten(1).mean(dim=1) for t in mine.values()) if mine else torch.zeros_like(mse)
            reg = s.lambda_delta * delta + s.lambda_residual * size
            return dict(total=s.lambda_mse * mse + s.lambda_per * per + reg, mse=mse, perceptual=per, reg=reg)

        def project(v: dict) -> None:
            self.pivot.project_({self.code_key: v["code"]})

        descent = descend(
            variables,
            loss,
            cap=s.steps,
            lr=s.learning_rate(),
            stopping=s.stopping_rule(),
            project=project,
            progress=progress,
            desc=desc,
        )
        found = {r: variables[f"F{r}"].detach() for r in residuals}
        return variables["code"].detach(), found, descent

    def second_stage_cap(self, settings, generator) -> int:
        """A single-latent inversion per residual size, then the joint one."""
        s = self.settings_for(settings)
        return (len(s.sizes_for(generator)) + 1) * s.steps

    def refine(
        self,
        codes,
        ctx: SpaceContext,
        *,
        image_losses,
        settings: Mapping[str, Any] | None = None,
        progress: bool = False,
        desc: str = "",
    ) -> tuple[dict, Descent]:
        """Measure each candidate latent's invertibility, select one per segment, then optimise them jointly.
        The Descent's traces are the joint stage's; its steps count every stage's (the single-latent ones too)."""
        from fzplus.faces.parsing import SEGMENTS, parse_faces

        s = self.settings_for(settings if settings is not None else ctx.settings)
        G, pivot = ctx.generator, codes[self.code_key].detach()
        n = pivot.shape[0]
        shapes = self.residual_shapes(G, s.sizes_for(G))
        finest_first = sorted(shapes, reverse=True)
        everyone = torch.arange(n, device=pivot.device)
        segments = parse_faces(image_losses.targets, parser=s.parser).labels.to(pivot.device)
        zeros = {r: pivot.new_zeros(n, *shape) for r, shape in shapes.items()}
        ones = {r: pivot.new_ones(n, 1, r, r) for r in shapes}
        maps, stages = [], []
        for r in finest_first:  # the single-latent inversions: pivot + one unmasked residual
            code, residual, descent = self._optimise(
                pivot,
                {r: zeros[r]},
                {r: ones[r]},
                ctx,
                image_losses,
                s,
                progress=progress,
                desc=f"{desc} invertibility F{r}",
            )
            stages.append(descent)
            with torch.no_grad():
                image = residual_synthesis(
                    G, self.generator_inputs({self.code_key: code}, ctx).ws, residual, {r: ones[r]}
                )[0]
            maps.append(image_losses.maps(image, everyone))
        with torch.no_grad():
            maps.append(image_losses.maps(self.pivot.render({self.code_key: pivot}, ctx), everyone))
        latent_map, means = select_latents(torch.stack(maps, dim=1), segments, tau=s.tau, segment_count=len(SEGMENTS))
        masks = latent_masks(latent_map, sorted(shapes))
        code, residuals, joint = self._optimise(
            pivot, zeros, masks, ctx, image_losses, s, progress=progress, desc=f"{desc} joint"
        )
        flat = torch.cat([residuals[r].flatten(1) for r in sorted(shapes)], dim=1)
        sizes = torch.tensor(sorted(shapes), dtype=torch.long, device=pivot.device).expand(n, -1).clone()
        return (
            {
                self.code_key: code,
                "residuals": flat,
                "residual_sizes": sizes,
                "latent_map": latent_map.to(torch.uint8),
                "segment_distances": means,
            },
            Descent.joined([*stages, joint]),
        )

    def candidate_names(self, sizes: Sequence[int]) -> list[str]:
        """Names of the latent_map's values: the residuals finest first, then the pivot."""
        return [f"F{r}" for r in sorted(sizes, reverse=True)] + [self.pivot.name]


def latent_masks(latent_map: torch.Tensor, sizes: Sequence[int]) -> dict[int, torch.Tensor]:
    """Binary mask [N, 1, r, r] of each residual size r: where the map chose it, area-resized, >= 0.5.
    latent_map values index the sizes finest first, len(sizes) meaning the pivot."""
    order = sorted(sizes, reverse=True)
    masks = {}
    for r in sizes:
        chosen = (latent_map == order.index(r)).to(torch.float32)[:, None]
        masks[r] = (F.interpolate(chosen, size=(r, r), mode="area") >= 0.5).to(torch.float32)
    return masks
