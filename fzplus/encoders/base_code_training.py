"""Training of the base-code encoder on generated pairs (paper Eq. 2), resumable from checkpoints.

Recipe (facts from kkang831/BDInvert_Release, BDInvert/train_basecode_encoder.py): every step draws
z ~ N(0, I), ws = truncate(mapping(z), psi 0.7 on the first 8 layers), x = G(ws) with fixed noise; the
encoder sees x resized to 8s and the generator finishes the image from f = E(x_down) with the true ws;
loss = mean squared error over all pixels + lambda_enc (10) x mean perceptual distance; Adam lr 1e-3,
x0.1 every 2000 steps, batch 16, 10k steps. BDInvert's perceptual term is LPIPS-VGG on both images
resized to 256; here it is any callable `perceptual(x, y) -> [N]` on [-1, 1] images (resizing is the
callable's business), or None for MSE alone. As in the authors' code, a bare f restarts the RGB skip.

Determinism: the encoder's initial weights and every z come from `seed` (the z from a torch.Generator
whose state is checkpointed), and the learning rate is a function of the step, so resuming from a
checkpoint reproduces an uninterrupted run exactly. The generator must use fixed noise.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fzplus.encoders.base_code import (
    BaseCodeEncoder,
    EncoderFileError,
    build_encoder,
    check_encoder_file,
    encode,
    encoder_payload,
    generator_fingerprint,
    mean_feature_map,
    read_encoder_file,
    write_atomically,
)
from fzplus.encoders.recipes import BASE_CODE
from fzplus.generator import Generator

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [N,3,H,W], y [N,3,H,W]) -> [N]
HELD_OUT_SEED = 987654321  # evaluation default, far from the small training seeds


def learning_rate(step: int, *, lr: float, lr_decay_every: int, lr_decay: float) -> float:
    """Step decay, as torch's StepLR stepped once per iteration: lr x decay^(step // every)."""
    return lr * lr_decay ** (step // lr_decay_every)


@torch.no_grad()
def sample_generated(
    generator: Generator, n: int, *, rng: torch.Generator, truncation_psi: float, truncation_cutoff: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """n generated pairs: ws [n, num_ws, w_dim] and images [n, 3, R, R]."""
    z = generator.sample_z(n, generator=rng)
    ws = generator.map(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    return ws, generator.synthesize(ws)


def reconstruct(generator: Generator, f: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """G(f, ws_{M+}): finish the image from a bare base code f [N, C, s, s] with the detail codes of ws."""
    m = generator.first_detail_layer(f.shape[-1])
    return generator.synthesize_from(f, ws[:, m:])


def encoder_loss(
    generator: Generator,
    encoder: BaseCodeEncoder,
    ws: torch.Tensor,
    images: torch.Tensor,
    *,
    lambda_enc: float,
    perceptual: Perceptual | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 2 for one batch: (loss, {'loss', 'mse'[, 'perceptual']} as floats)."""
    f = encoder(images)  # [N, C, s, s]; resized to 8s inside
    recon = reconstruct(generator, f, ws)  # [N, 3, R, R]
    mse = (recon - images).square().mean()
    loss, terms = mse, dict(mse=mse.item())
    if perceptual is not None:
        distance = perceptual(recon, images)
        assert distance.shape == (images.shape[0],), (
            f"perceptual(x, y) must return [N] = [{images.shape[0]}], got {tuple(distance.shape)}"
        )
        loss = loss + lambda_enc * distance.mean()
        terms["perceptual"] = distance.mean().item()
    terms["loss"] = loss.item()
    return loss, terms


@contextlib.contextmanager
def frozen_parameters(*modules: Any):
    """No gradients into the generator (or a perceptual net): only the encoder learns."""
    params = [p for m in modules if isinstance(m, nn.Module) for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def describe_perceptual(perceptual: Perceptual | None) -> str | None:
    """A name for the perceptual callable, stored in checkpoints so a resume cannot switch it silently."""
    if perceptual is None:
        return None
    name = (
        getattr(perceptual, "name", None) or getattr(perceptual, "__qualname__", None) or type(perceptual).__qualname__
    )
    return f"{getattr(perceptual, '__module__', None) or type(perceptual).__module__}.{name}"


def _resume_state(
    path: pathlib.Path, *, generator: Generator, fingerprint: str, config: dict[str, Any], steps: int
) -> dict[str, Any]:
    payload = read_encoder_file(path)
    check_encoder_file(payload, path, generator=generator, base_size=config["base_size"], fingerprint=fingerprint)
    return dict(payload, training=resumable_training_state(payload, path, config=config, steps=steps))


def resumable_training_state(
    payload: dict[str, Any], path: str | os.PathLike, *, config: dict[str, Any], steps: int
) -> dict[str, Any]:
    """The 'training' entry of a checkpoint payload, after checking that it can continue a run with `config`
    for `steps` steps (a final file, other settings or a later step are refused with what to do)."""
    training = payload.get("training")
    if training is None:
        raise EncoderFileError(
            f"{path}: a final encoder file, not a training checkpoint; "
            "pass resume=False to train anew (it is overwritten) or use another checkpoint_path"
        )
    differing = sorted(k for k in set(config) | set(training["config"]) if config.get(k) != training["config"].get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {training['config'].get(k)!r} vs now {config.get(k)!r}" for k in differing)
        raise EncoderFileError(
            f"{path}: checkpoint was made with other training settings ({detail}); "
            "use the same settings, another checkpoint_path, or resume=False"
        )
    if training["step"] > steps:
        raise EncoderFileError(
            f"{path}: checkpoint is at step {training['step']}, past the {steps} steps asked for; "
            f"ask for at least {training['step']} steps"
        )
    return training


def train_encoder(
    generator: Generator,
    *,
    base_size: int,
    steps: int,
    batch_size: int = BASE_CODE.batch_size,
    lr: float = BASE_CODE.lr,
    lr_decay_every: int = BASE_CODE.lr_decay_every,
    lr_decay: float = BASE_CODE.lr_decay,
    lambda_enc: float = BASE_CODE.lambda_enc,
    perceptual: Perceptual | None = None,
    truncation_psi: float = BASE_CODE.truncation_psi,
    truncation_cutoff: int | None = BASE_CODE.truncation_cutoff,
    stage_channels: Sequence[int] = BASE_CODE.stage_channels,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = BASE_CODE.checkpoint_every,
    resume: bool = True,
    progress: bool = True,
) -> tuple[BaseCodeEncoder, dict[str, list[float]]]:
    """Train E on generated pairs; returns (encoder in eval mode, history of per-step 'loss', 'mse'[, 'perceptual']).

    checkpoint_path: written atomically every `checkpoint_every` steps and at the end (encoder, optimiser,
    step, z-generator state, history, settings, generator config and fingerprint). With resume=True an
    existing checkpoint there is continued (settings must match; `steps` may grow); resume=False overwrites it.
    """
    if generator.noise_mode == "random":
        raise ValueError(
            "train_encoder needs a generator with fixed noise (the authors' randomize_noise=False): "
            "set generator.noise_mode = 'const'"
        )
    if steps < 0 or batch_size < 1 or checkpoint_every < 1 or lr_decay_every < 1:
        raise ValueError(
            "need steps >= 0, batch_size >= 1, checkpoint_every >= 1, lr_decay_every >= 1; "
            f"got {steps}, {batch_size}, {checkpoint_every}, {lr_decay_every}"
        )
    config = dict(
        base_size=int(base_size),
        stage_channels=[int(c) for c in stage_channels],
        batch_size=int(batch_size),
        lr=float(lr),
        lr_decay_every=int(lr_decay_every),
        lr_decay=float(lr_decay),
        lambda_enc=float(lambda_enc),
        perceptual=describe_perceptual(perceptual),
        truncation_psi=float(truncation_psi),
        truncation_cutoff=truncation_cutoff,
        seed=int(seed),
    )
    fingerprint = generator_fingerprint(generator)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the caller's global RNG
        torch.manual_seed(seed)
        encoder = build_encoder(generator, base_size=base_size, stage_channels=stage_channels)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {
        k: [] for k in (["loss", "mse"] + (["perceptual"] if perceptual is not None else []))
    }
    start = 0
    path = None if checkpoint_path is None else pathlib.Path(checkpoint_path)
    if path is not None and resume and path.exists():
        state = _resume_state(path, generator=generator, fingerprint=fingerprint, config=config, steps=steps)
        encoder.load_state_dict(state["encoder_state"])
        optimizer.load_state_dict(state["training"]["optimizer"])
        rng.set_state(state["training"]["rng_state"])
        history = {k: list(v) for k, v in state["training"]["history"].items()}
        start = int(state["training"]["step"])

    def save(step: int) -> None:
        training = dict(
            step=step, config=config, optimizer=optimizer.state_dict(), rng_state=rng.get_state(), history=history
        )
        write_atomically(
            dict(encoder_payload(encoder, generator=generator, fingerprint=fingerprint), training=training), path
        )

    encoder.train()
    bar = tqdm(
        range(start, steps), initial=start, total=steps, disable=not progress, desc="encoder", dynamic_ncols=True
    )
    with frozen_parameters(generator, perceptual):
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, lr=lr, lr_decay_every=lr_decay_every, lr_decay=lr_decay)
            ws, images = sample_generated(
                generator, batch_size, rng=rng, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
            )
            loss, terms = encoder_loss(generator, encoder, ws, images, lambda_enc=lambda_enc, perceptual=perceptual)
            if not math.isfinite(terms["loss"]):
                raise FloatingPointError(f"encoder loss is {terms['loss']} at step {step}; lower lr (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in terms.items():
                history[key].append(value)
            bar.set_postfix(loss=f"{terms['loss']:.4f}")
            if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                save(step + 1)
    return encoder.eval(), history


@torch.no_grad()
def evaluate_encoder(
    generator: Generator,
    encoder: BaseCodeEncoder,
    *,
    base_size: int,
    num_samples: int = 64,
    batch_size: int = 16,
    seed: int = HELD_OUT_SEED,
    truncation_psi: float = 0.7,
    truncation_cutoff: int | None = 8,
) -> dict[str, torch.Tensor]:
    """Per-image figures [num_samples] on held-out generated images x = G(ws):
    'encoder' / 'mean_feature_map': MSE of G(f0, true ws_{M+}) against x, for f0 = E(x) and for the mean
    feature map; 'feature_mse': mean (E(x) - f(ws))^2 against the generator's own base code;
    'f0_std' / 'f_std': the spread of E(x) and of f(ws), which shows an encoder off the feature distribution."""
    rng = torch.Generator().manual_seed(seed)
    f_mean = mean_feature_map(generator, base_size=base_size)  # [1, C, s, s]
    rows: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("encoder", "mean_feature_map", "feature_mse", "f0_std", "f_std")
    }
    for begin in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - begin)
        ws, images = sample_generated(
            generator, n, rng=rng, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
        )
        f0, f_true = encode(encoder, images, base_size=base_size), generator.features(ws, at=base_size).f
        for name, f in (("encoder", f0), ("mean_feature_map", f_mean.expand(n, -1, -1, -1))):
            rows[name].append((reconstruct(generator, f, ws) - images).square().mean(dim=(1, 2, 3)))
        rows["feature_mse"].append((f0 - f_true).square().mean(dim=(1, 2, 3)))
        rows["f0_std"].append(f0.flatten(1).std(dim=1))
        rows["f_std"].append(f_true.flatten(1).std(dim=1))
    return {name: torch.cat(values) for name, values in rows.items()}


@torch.no_grad()
def reconstruction_preview(
    generator: Generator,
    encoder: BaseCodeEncoder,
    *,
    base_size: int,
    count: int = 8,
    seed: int = HELD_OUT_SEED,
    truncation_psi: float = 0.7,
    truncation_cutoff: int | None = 8,
) -> torch.Tensor:
    """Three rows of `count` held-out images for a grid, [3 * count, 3, R, R]: x = G(ws), G(E(x), ws_{M+}),
    and G(mean feature map, ws_{M+}) (the first images of evaluate_encoder with the same seed)."""
    ws, images = sample_generated(
        generator,
        count,
        rng=torch.Generator().manual_seed(seed),
        truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff,
    )
    f_mean = mean_feature_map(generator, base_size=base_size, batch_size=count)
    rows = [
        images,
        reconstruct(generator, encode(encoder, images, base_size=base_size), ws),
        reconstruct(generator, f_mean, ws),
    ]
    return torch.cat(rows).clamp(-1, 1)
