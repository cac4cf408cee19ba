"""Batched inversion into any latent space (paper §3.3, Eqs. 1-5; SPEC §5); render / edit of codes: rendering.py.

Loss of image i (images in [-1, 1], the target at the generator's resolution):
    L_i = MSE(x_i, G_i) + lambda_per * D(x_i^p, G_i^p) + lambda_reg * mean((f_i - f0_i)^2) + R_space(i)
MSE is the mean over pixels and channels at full resolution; D is the perceptual distance on both images
resized to `perceptual_size` (target: Lanczos, once, then clipped to [-1, 1] and rounded to 8 bit as the authors'
Lanczos_resizing does, losses.py; reconstruction: bicubic); the f term exists in F
spaces only; R_space is the space's own regulariser (P_N spaces). The batch loss is the SUM of the L_i, so
each image's gradient, and (Adam being elementwise) each image's update, is the one it would get alone.
Per-image random starts come from seeds derived from (seed, image key), so batching changes nothing.
After every Adam step the space projects its codes (Z codes: retraction to the sphere, Eq. 5). Every stage runs
fzplus.optimiser's loop: a learning-rate schedule over the step cap (the paper: constant) and a per-image
stopping rule (the paper: none), an image that stops leaving the batch; each image's steps per stage are its budget.
A method with a second stage (`space.has_second_stage`, e.g. PTI's tuning of the generator, spaces/_tuning.py)
runs it after the last step through `space.refine`, given each image's MSE and perceptual distance; its steps
continue the loss traces. A space's own settings (`space.settings_class`: P_N's and IDInvert's weights, PTI's
and SAM's stages) reach it as `ctx.settings`. The defaults of the loop's own settings are the paper's, from
fzplus.inversion.settings (their one home, from which the config schema is generated too).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

import spaces
from fzplus.inversion.losses import ImageLosses
from fzplus.inversion.settings import PAPER
from fzplus.optimiser import LOSS_TERMS, Descent, LearningRate, StoppingRule, descend
from fzplus.perceptual import PerceptualDistance, build_perceptual
from fzplus.settings import as_dict
from spaces.base import Encoder, LatentSpace, SpaceContext

FIRST_STAGE = "invert"  # the name of the first stage in InversionResult.steps


@dataclass
class InversionResult:
    """Codes (CPU, batch-first, one entry per free variable), reconstructions [N, 3, R, R] rendered from
    the final codes, per-image loss traces [N, steps] for each of LOSS_TERMS ('perceptual' is the
    unweighted distance, 'reg' the weighted sum of the f term and the space's regulariser; the value at
    step t is the loss before update t; an image that stopped repeats its last value), and the steps each image
    took in each stage, {stage: [N]} (FIRST_STAGE, then the second stage's settings key): its budget."""

    space: str
    keys: list[str]
    image_seeds: list[int]
    codes: dict[str, torch.Tensor]
    reconstructions: torch.Tensor
    losses: dict[str, torch.Tensor]
    initial_base_code: torch.Tensor | None = None
    settings: dict = field(default_factory=dict)
    steps: dict[str, torch.Tensor] = field(default_factory=dict)

    def image_steps(self) -> torch.Tensor:
        """[N] every stage's steps added up: the generator forward and backward passes each image cost."""
        return sum(self.steps.values(), torch.zeros(len(self.keys), dtype=torch.long))

    def image_codes(self, i: int) -> dict[str, torch.Tensor]:
        """Codes of image i, each with a leading batch dimension of 1."""
        return {k: v[i : i + 1] for k, v in self.codes.items()}


def derive_image_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the run seed and an image key: stable across runs, platforms and batchings."""
    digest = hashlib.sha256(f"{int(seed)}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Parameters excluded from autograd for the duration (the generator is never optimised here)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _check_targets(targets: torch.Tensor, generator) -> None:
    r = generator.resolution
    if not (isinstance(targets, torch.Tensor) and targets.ndim == 4 and tuple(targets.shape[1:]) == (3, r, r)):
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(
            f"targets must be a tensor [N, 3, {r}, {r}] in [-1, 1] at the generator's resolution, got {shape}; "
            f"load files with fzplus.inversion.load_targets(paths, resolution={r}) or resize with resize_lanczos"
        )
    if targets.shape[0] == 0:
        raise ValueError("no targets to invert")
    if targets.dtype != generator.w_avg.dtype:
        raise ValueError(
            f"targets are {targets.dtype} but the generator is {generator.w_avg.dtype}; convert one of them"
        )
    if not bool(torch.isfinite(targets).all()):
        raise ValueError("targets contain NaN or infinite values")


def _resolve_perceptual(perceptual, device) -> PerceptualDistance | None:
    if perceptual is None or isinstance(perceptual, PerceptualDistance):
        return perceptual
    if isinstance(perceptual, str):
        return build_perceptual(perceptual, device=device)
    raise TypeError(f"perceptual must be a backend name, a PerceptualDistance or None, got {type(perceptual).__name__}")


def invert(
    targets: torch.Tensor,
    generator,
    space: str | LatentSpace,
    *,
    steps: int = PAPER.steps,
    lr: float = PAPER.lr,
    lr_rampup: float = PAPER.lr_rampup,
    lr_rampdown: float = PAPER.lr_rampdown,
    stop_window: int = PAPER.stop_window,
    stop_tolerance: float = PAPER.stop_tolerance,
    keep_best: bool = PAPER.keep_best,
    lambda_per: float = PAPER.lambda_per,
    lambda_reg: float = PAPER.lambda_reg,
    perceptual: str | PerceptualDistance | None = "stlpips-vgg",
    perceptual_size: int = 256,
    perceptual_precision: str = PAPER.perceptual_precision,
    encoder: Encoder | None = None,
    base_size: int = PAPER.base_size,
    seed: int = 0,
    image_keys: Sequence[str] | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    pn_stats=None,
    batch_size: int | None = PAPER.batch_size,
    method_settings=None,
    pivot: InversionResult | None = None,
    progress: bool = True,
) -> InversionResult:
    """Invert targets [N, 3, R, R] (in [-1, 1], at the generator's resolution) into `space`.

    Defaults are the paper's (Adam lr 0.01, constant, 1200 steps for every image, lambda_per = lambda_reg = 10,
    perceptual at 256) except the perceptual backend: 'stlpips-vgg' works offline; the paper profile passes
    'lpips-vgg'. A name builds the network on every call: pass a built PerceptualDistance (fzplus.perceptual) to
    reuse one. perceptual=None drops the perceptual term; perceptual_precision 'bfloat16' runs its trunk on the
    reconstructions under autocast (fzplus.perceptual; 'float32', the default, is the reference). steps is the cap;
    lr the peak of a schedule ramped up over the first lr_rampup and down over the last lr_rampdown fraction of the
    cap; an image stops once its loss fell by less than stop_tolerance (relative) over stop_window steps (0: never),
    ending on its lowest-loss iterate with keep_best; fzplus.optimiser. base_size is used by F spaces only.
    encoder: the one the space's `encoder_kind` names (F spaces: the base-code encoder,
    optional; IDInvert: its W+ encoder, required). image_keys (default '0', '1', ...) name the images and seed their
    random starts. Images are optimised `batch_size` at a time (default: all at once); the results do not depend on
    it. pn_stats: P_N statistics (fzplus.pn_stats), required by the P_N spaces. truncation (psi, cutoff) is applied
    by the spaces the authors' scripts truncate (Z-type and single-w spaces); psi = 1 (default) turns it off.
    method_settings: the space's own settings (`space.settings_class`, or a mapping of its fields, e.g. the config's
    inversion.<space.settings_key>; None = the class defaults), e.g. lambda_pn of the P_N spaces, PTI's tuning stage
    (spaces/_tuning.py TuningSettings); a space without settings refuses any. pivot: for a method built on a pivot
    space (`space.pivot`: PTI, SAM), that space's inversion of the same targets with the same settings; its codes
    and loss traces stand in for the method's first stage, which is that inversion bitwise (the loop is
    deterministic and does not depend on the batching), so only the second stage is computed.
    """
    space = spaces.get(space)
    space.check_generator(generator)  # planning refuses it already; callers that plan nothing get the same message
    _check_targets(targets, generator)
    n = targets.shape[0]
    keys = [str(i) for i in range(n)] if image_keys is None else [str(k) for k in image_keys]
    if len(keys) != n or len(set(keys)) != n:
        raise ValueError(
            f"image_keys must be {n} distinct names, one per target; got {len(keys)} ({len(set(keys))} distinct)"
        )
    if generator.noise_mode == "random":
        raise ValueError("inversion needs a deterministic generator: set generator.noise_mode = 'const' (or 'none')")
    device = generator.w_avg.device
    if pn_stats is not None:
        pn_stats.check_generator(generator)
        pn_stats = pn_stats.to(device)
    own_settings = space.settings_for(method_settings)
    ctx = SpaceContext(
        generator=generator,
        base_size=base_size if space.uses_base_code else None,
        truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff,
        pn_stats=pn_stats,
        encoder=encoder,
        settings=own_settings,
    )
    distance_net = _resolve_perceptual(perceptual, device)
    settings = dict(
        space=space.name,
        steps=steps,
        lr=lr,
        lr_rampup=lr_rampup,
        lr_rampdown=lr_rampdown,
        stop_window=stop_window,
        stop_tolerance=stop_tolerance,
        keep_best=keep_best,
        lambda_per=lambda_per,
        lambda_reg=lambda_reg,
        perceptual=getattr(distance_net, "name", None),
        perceptual_size=perceptual_size,
        perceptual_precision=perceptual_precision,
        base_size=ctx.base_size,
        seed=seed,
        truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff,
        encoder=type(encoder).__name__ if encoder is not None else None,
        method_settings=as_dict(own_settings) if own_settings is not None else None,
    )

    if pivot is not None:
        _check_pivot(pivot, space, keys=keys, steps=steps, settings=settings)

    chunk = batch_size or n
    parts = []
    with frozen(generator):
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            parts.append(
                _invert_batch(
                    targets[start:stop].to(device),
                    keys[start:stop],
                    space,
                    ctx,
                    steps=steps,
                    lr=LearningRate(peak=lr, rampup=lr_rampup, rampdown=lr_rampdown),
                    stopping=StoppingRule(window=stop_window, tolerance=stop_tolerance, keep_best=keep_best),
                    lambda_per=lambda_per,
                    lambda_reg=lambda_reg,
                    distance_net=distance_net,
                    perceptual_size=perceptual_size,
                    perceptual_precision=perceptual_precision,
                    encoder=encoder,
                    seed=seed,
                    progress=progress,
                    desc=f"invert {space.name} [{start}:{stop}]",
                    pivot=_pivot_slice(pivot, start, stop) if pivot is not None else None,
                )
            )

    def joined(name: str) -> torch.Tensor | None:
        return torch.cat([p[name] for p in parts]) if parts[0][name] is not None else None

    return InversionResult(
        space=space.name,
        keys=keys,
        image_seeds=[s for p in parts for s in p["seeds"]],
        codes={k: torch.cat([p["codes"][k] for p in parts]) for k in parts[0]["codes"]},
        reconstructions=joined("reconstructions"),
        losses={t: torch.cat([p["losses"][t] for p in parts]) for t in LOSS_TERMS},
        initial_base_code=joined("f0"),
        settings=settings,
        steps={stage: torch.cat([p["steps"][stage] for p in parts]) for stage in parts[0]["steps"]},
    )


# the settings a method's first stage shares with its pivot's inversion (the rest name the method or its second stage)
PIVOT_SETTINGS = (
    "steps",
    "lr",
    "lr_rampup",
    "lr_rampdown",
    "stop_window",
    "stop_tolerance",
    "lambda_per",
    "lambda_reg",
    "perceptual",
    "perceptual_size",
    "perceptual_precision",
    "seed",
    "truncation_psi",
    "truncation_cutoff",
)


def _check_pivot(
    pivot: InversionResult, space: LatentSpace, *, keys: Sequence[str], steps: int, settings: dict
) -> None:
    if space.pivot is None:
        raise ValueError(f"space {space.name!r} has no pivot space; pass pivot=None")
    if pivot.space != space.pivot.name:
        raise ValueError(
            f"{space.name} pivots on {space.pivot.name!r}, but the given pivot inversion is of {pivot.space!r}"
        )
    if list(pivot.keys) != list(keys):
        raise ValueError(
            f"the pivot inversion holds images {list(pivot.keys)[:4]}..., not the targets' {list(keys)[:4]}...: "
            "invert the same targets, in the same order"
        )
    if set(pivot.codes) != set(space.pivot.variables):
        raise ValueError(
            f"the pivot inversion's codes are {sorted(pivot.codes)}; "
            f"{space.pivot.name} has {list(space.pivot.variables)}"
        )
    lengths = {t: v.shape[1] for t, v in pivot.losses.items()}
    if set(lengths) != set(LOSS_TERMS) or set(lengths.values()) != {steps}:
        raise ValueError(
            f"the pivot inversion ran {sorted(set(lengths.values()))} steps of {sorted(lengths)}; "
            f"this run has {steps} of {list(LOSS_TERMS)}"
        )
    differ = {
        k: (pivot.settings[k], settings[k])
        for k in PIVOT_SETTINGS
        if k in pivot.settings and pivot.settings[k] != settings[k]
    }
    if differ:
        raise ValueError(f"the pivot inversion ran with other settings (pivot, this run): {differ}")


def _pivot_slice(pivot: InversionResult, start: int, stop: int) -> dict:
    if set(pivot.steps) != {FIRST_STAGE}:
        raise ValueError(f"the pivot inversion records steps of stages {sorted(pivot.steps)}, not {FIRST_STAGE!r}")
    return dict(
        codes={k: v[start:stop] for k, v in pivot.codes.items()},
        losses={t: v[start:stop] for t, v in pivot.losses.items()},
        steps=pivot.steps[FIRST_STAGE][start:stop],
    )


def _invert_batch(
    targets,
    keys,
    space: LatentSpace,
    ctx: SpaceContext,
    *,
    steps,
    lr: LearningRate,
    stopping: StoppingRule,
    lambda_per,
    lambda_reg,
    distance_net,
    perceptual_size,
    perceptual_precision,
    encoder,
    seed,
    progress,
    desc,
    pivot=None,
) -> dict:
    seeds = [derive_image_seed(seed, k) for k in keys]
    init = space.init_codes(targets, ctx, image_seeds=seeds, encoder=encoder) if pivot is None else pivot["codes"]
    if set(init) != set(space.variables):
        raise RuntimeError(
            f"space {space.name!r} initialised {sorted(init)} but declares variables {list(space.variables)}"
        )
    device = targets.device
    codes = {k: v.detach().to(device).clone().requires_grad_(True) for k, v in init.items()}
    f0 = codes["f"].detach().clone() if "f" in codes else None
    # the loop's and a second stage's
    image_losses = ImageLosses(targets, distance_net, perceptual_size, precision=perceptual_precision)
    if pivot is None:
        first = _descend(
            codes,
            space,
            ctx,
            image_losses,
            f0=f0,
            steps=steps,
            lr=lr,
            stopping=stopping,
            lambda_per=lambda_per,
            lambda_reg=lambda_reg,
            progress=progress,
            desc=desc,
        )
    else:  # the pivot's traces and budget are the first stage's
        first = Descent(traces={t: pivot["losses"][t].to(device) for t in LOSS_TERMS}, steps=pivot["steps"].to(device))
    trace = {t: list(first.traces[t].unbind(1)) for t in LOSS_TERMS}
    budget = {FIRST_STAGE: first.steps}
    if space.has_second_stage:
        codes, second = space.refine(
            {k: v.detach() for k, v in codes.items()},
            ctx,
            settings=ctx.settings,
            progress=progress,
            desc=f"{desc} {space.settings_key or 'refine'}",
            image_losses=image_losses,
        )
        if set(codes) != {*space.variables, *space.refined_variables}:
            raise RuntimeError(
                f"space {space.name!r} refined to {sorted(codes)}; "
                f"expected {[*space.variables, *space.refined_variables]}"
            )
        if not isinstance(second, Descent) or tuple(second.steps.shape) != (targets.shape[0],):
            raise RuntimeError(f"space {space.name!r}: refine must return its codes and a Descent of its images")
        for name in LOSS_TERMS:
            trace[name].extend(second.traces[name].unbind(1))
        budget[space.settings_key or "refine"] = second.steps
    with torch.no_grad():
        reconstructions = space.render(codes, ctx)
    empty = targets.new_zeros(targets.shape[0], 0)
    return dict(
        seeds=seeds,
        codes={k: v.detach().cpu() for k, v in codes.items()},
        reconstructions=reconstructions.cpu(),
        losses={t: (torch.stack(v, dim=1) if v else empty).cpu() for t, v in trace.items()},
        f0=f0.cpu() if f0 is not None else None,
        steps={stage: v.cpu() for stage, v in budget.items()},
    )


def _descend(
    codes: dict,
    space: LatentSpace,
    ctx: SpaceContext,
    image_losses: ImageLosses,
    *,
    f0,
    steps,
    lr: LearningRate,
    stopping: StoppingRule,
    lambda_per,
    lambda_reg,
    progress,
    desc,
) -> Descent:
    """The inversion's first stage: Eq. 1 minimised over `codes` (in place) by fzplus.optimiser.descend."""

    def loss(view: dict, idx: torch.Tensor) -> dict:
        mse, per = image_losses(space.render(view, ctx), idx)
        reg = space.regularizer(view, ctx)
        if f0 is not None:
            reg = reg + lambda_reg * (view["f"] - f0[idx]).square().flatten(1).mean(dim=1)
        return dict(total=mse + lambda_per * per + reg, mse=mse, perceptual=per, reg=reg)

    return descend(
        codes, loss, cap=steps, lr=lr, stopping=stopping, project=space.project_, progress=progress, desc=desc
    )
