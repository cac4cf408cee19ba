"""Pivotal tuning (PTI; Roich et al. 2022, danielroich/PTI): a method built on a latent space, whose second
stage tunes the generator's synthesis weights to each image around the inverted code (the pivot).

Facts from the sources and the choices made here:
- Pivot. PTI inverts one w (450 steps, LPIPS + noise regularisation, noise added to w early on); the
  authors' "PTI w/ Z+" (raven38/hypershpere-gan-inversion, HFGI3D, first_inv_type='z+') one z per layer.
  Here the pivot IS the suite's inversion into W (resp. Z+), with the suite's loss, steps and truncation,
  so that the tuning gain is measured on top of a row of Table 1 and both variants start alike; the run
  takes it from that row's job (engine.invert pivot=) rather than inverting again. The noise regulariser is
  moot: the suite's generator renders with fixed noise buffers.
- Tuning. PTI: Adam (lr 3e-4, default betas) on the synthesis weights, MSE + LPIPS (both weight 1), at
  most 350 steps, an image stops once its LPIPS is <= 0.06. Here the perceptual term is the suite's own
  distance (the profile's backend and size, as every inversion), so `stop_at` is in its units. Besides PTI's
  threshold, an image also stops on its plateau (the suite's stopping rule, fzplus.optimiser; off by
  default, as in PTI).
- The mapping network is NOT tuned, in either variant. The authors' Z+ code optimises Adam(G.parameters()),
  mapping included, but then the Z directions an edit follows pass through a different mapping for each
  image, and the two variants would differ in what is tuned as well as in the pivot. With the mapping
  fixed, W and Z+ edits mean what they mean for every other space.
- Edits move the pivot code only (the pivot space's own rule); they are rendered with the image's tuned
  weights. A generated sample's true codes are its pivot codes with a zero delta (the untuned generator
  renders it exactly).

Storage: the tuned weights are the code variable `delta` [N, P], P = the synthesis parameter count,
stored in float16 (2 bytes per weight per image; PTI's own files hold the whole generator in float32).
Rendering adds delta to the generator's weights per image, N images at once through
torch.func.functional_call under vmap. `tune_reference` is the plain path (a copy of the generator per
image, torch.optim.Adam, PTI's loop) that the batched tuning (fzplus.optimiser.descend) is tested against.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fzplus.optimiser import Descent, LearningRate, StoppingSettings, descend
from fzplus.settings import setting

from .base import LatentSpace, SpaceContext

STORED_DTYPE = torch.float16
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch's defaults, which PTI uses

# images [n, 3, R, R] -> (mse [n], perceptual distance [n]) against the targets of those images
ImageLosses = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TuningSettings(StoppingSettings):
    """the second stage of tuning methods (PTI, PTI w/ Z+: spaces/_tuning.py); defaults are PTI's
    (hyperparameters.py of danielroich/PTI)"""

    steps: int = setting(350, minimum=0, description="at most this many steps per image")
    lr: float = setting(3e-4, exclusiveMinimum=0)
    lambda_mse: float = setting(1.0, minimum=0)
    lambda_per: float = setting(1.0, minimum=0)
    stop_at: float = setting(
        0.06, minimum=0, description="an image stops once its perceptual distance (the profile's) is <= this"
    )


def synthesis_parameters(generator) -> dict[str, torch.Tensor]:
    """The tuned weights: every parameter of the synthesis network, in its own order."""
    return dict(generator.synthesis.named_parameters())


def parameter_count(generator) -> int:
    return sum(p.numel() for p in synthesis_parameters(generator).values())


def tuned_synthesis(generator, delta: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Images [n, 3, R, R] of ws [n, num_ws, D], image i rendered with synthesis weights base + delta[i]."""
    from torch.func import functional_call, vmap

    synthesis = generator.synthesis
    base = synthesis_parameters(generator)
    assert delta.ndim == 2 and delta.shape == (ws.shape[0], parameter_count(generator)), (
        f"delta must be [{ws.shape[0]}, {parameter_count(generator)}], got {tuple(delta.shape)}"
    )
    buffers = dict(synthesis.named_buffers())
    # One split, not a slice per parameter: a slice's backward writes a zero-filled [n, P] gradient each
    # (10x the step's time at 64 px); split's backward concatenates the pieces once.
    pieces = delta.to(ws.dtype).split([p.numel() for p in base.values()], dim=1)
    per_image = {name: p + piece.view(-1, *p.shape) for (name, p), piece in zip(base.items(), pieces)}

    def one(params, w):
        return functional_call(synthesis, {**params, **buffers}, (w[None],))[0]

    return vmap(one)(per_image, ws)


class TunedSpace(LatentSpace):
    """A pivot space plus per-image synthesis weights tuned around its inverted codes (see the module doc)."""

    refined_variables = ("delta",)
    settings_key, settings_class = "tuning", TuningSettings

    def __init__(
        self,
        *,
        name: str,
        slug: str,
        pivot: LatentSpace,
        description: str,
        render_batch: int = 8,
        stored_dtype: torch.dtype = STORED_DTYPE,
    ):
        if pivot.uses_base_code:
            raise ValueError(
                f"{name}: the pivot {pivot.name!r} is an F space; tuning renders whole-generator codes only"
            )
        if pivot.settings_class is not None or pivot.needs_pn_stats or pivot.encoder_kind is not None:
            raise ValueError(
                f"{name}: the pivot {pivot.name!r} needs settings or artefacts of its own; the method passes it its own"
            )
        self.name, self.slug, self.description, self.pivot = name, slug, description, pivot
        self.domain, self.variables = pivot.domain, tuple(pivot.variables)
        self.uses_base_code, self.applies_truncation = False, pivot.applies_truncation
        self.render_batch = int(render_batch)  # images whose weights are materialised at once
        self.stored_dtype = stored_dtype

    @staticmethod
    def _pivot_codes(codes: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in codes.items() if k != "delta"}

    # ---- the pivot space's behaviour ---------------------------------------------------------------
    def init_codes(self, targets, ctx, *, image_seeds: Sequence[int], encoder=None):
        return self.pivot.init_codes(targets, ctx, image_seeds=image_seeds, encoder=encoder)

    def generator_inputs(self, codes, ctx):
        return self.pivot.generator_inputs(self._pivot_codes(codes), ctx)

    def project_(self, codes):
        self.pivot.project_(codes)

    def regularizer(self, codes, ctx):
        return self.pivot.regularizer(self._pivot_codes(codes), ctx)

    def edited_layers(self, ctx):
        return self.pivot.edited_layers(ctx)

    def apply_direction(self, codes, direction, alpha, ctx):
        moved = self.pivot.apply_direction(self._pivot_codes(codes), direction, alpha, ctx)
        return {**moved, "delta": codes["delta"]} if "delta" in codes else moved

    def codes_for_sample(self, z, ctx):
        codes = self.pivot.codes_for_sample(z, ctx)
        return {**codes, "delta": z.new_zeros(z.shape[0], parameter_count(ctx.generator), dtype=self.stored_dtype)}

    # ---- rendering with the tuned weights ----------------------------------------------------------
    def render(self, codes, ctx):
        if "delta" not in codes:  # during the pivot's own inversion
            return self.pivot.render(codes, ctx)
        ws = self.generator_inputs(codes, ctx).ws
        parts = [
            tuned_synthesis(ctx.generator, codes["delta"][i : i + self.render_batch], ws[i : i + self.render_batch])
            for i in range(0, ws.shape[0], self.render_batch)
        ]
        return torch.cat(parts)

    # ---- the tuning stage --------------------------------------------------------------------------
    def second_stage_cap(self, settings, generator) -> int:
        return self.settings_for(settings).steps

    def refine(
        self,
        codes: dict[str, torch.Tensor],
        ctx: SpaceContext,
        *,
        image_losses: ImageLosses,
        settings: TuningSettings | Mapping[str, Any] | None = None,
        progress: bool = False,
        desc: str = "",
    ) -> tuple[dict, Descent]:
        """Tune each image's synthesis weights around its pivot codes, all images at once.

        An image stops before its update once its perceptual distance is <= `stop_at` (PTI's `break`) or its loss
        is on its plateau (`stop_window`); a stopped image is no longer rendered and its weights no longer change.
        Returns the codes with `delta` (in `stored_dtype`) and the stage's Descent (traces [N, steps] per term).
        """
        s = self.settings_for(settings if settings is not None else ctx.settings)
        pivot = {k: v.detach() for k, v in self._pivot_codes(codes).items()}
        ws = self.generator_inputs(pivot, ctx).ws.detach()
        delta = ws.new_zeros(ws.shape[0], parameter_count(ctx.generator)).requires_grad_(True)

        def loss(view: dict, idx: torch.Tensor) -> dict:
            mse, per = image_losses(tuned_synthesis(ctx.generator, view["delta"], ws[idx]), idx)
            return dict(total=s.lambda_mse * mse + s.lambda_per * per, mse=mse, perceptual=per)

        descent = descend(
            {"delta": delta},
            loss,
            cap=s.steps,
            lr=LearningRate(peak=s.lr),
            stopping=s.stopping_rule(),
            finished=lambda terms: terms["perceptual"].detach() <= s.stop_at,  # PTI: checked before the step
            betas=ADAM_BETAS,
            eps=ADAM_EPS,
            progress=progress,
            desc=desc,
        )
        return {**pivot, "delta": delta.detach().to(self.stored_dtype)}, descent


def tune_reference(
    space: TunedSpace,
    codes: Mapping[str, torch.Tensor],
    ctx: SpaceContext,
    *,
    image_losses: ImageLosses,
    settings: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The plain path: PTI's loop for each image alone, on its own copy of the generator with
    torch.optim.Adam, PTI's stopping test and the plateau rule written out. Returns the tuned deltas [N, P] in
    float32 (for tests of the batched `refine`)."""
    s = space.settings_for(settings if settings is not None else ctx.settings)
    ws = space.generator_inputs({k: v.detach() for k, v in codes.items()}, ctx).ws.detach()
    deltas = []
    for i in range(ws.shape[0]):
        G = copy.deepcopy(ctx.generator)
        params = list(synthesis_parameters(G).values())
        start = [p.detach().clone() for p in params]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(params, lr=s.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        index = torch.tensor([i], device=ws.device)
        rule, history = s.stopping_rule(), []
        for _ in range(s.steps):
            mse, per = image_losses(G.synthesis(ws[i : i + 1]), index)
            history.append((s.lambda_mse * mse + s.lambda_per * per).item())
            if per.item() <= s.stop_at or bool(rule.plateaued(torch.tensor([history], dtype=torch.float64))[0]):
                break
            optimizer.zero_grad(set_to_none=True)
            (s.lambda_mse * mse + s.lambda_per * per).sum().backward()
            optimizer.step()
        deltas.append(torch.cat([(p.detach() - p0).flatten() for p, p0 in zip(params, start)]))
    return torch.stack(deltas)
