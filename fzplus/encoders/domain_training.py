"""Training of IDInvert's domain-guided encoder against a discriminator, on generated images; resumable.

IDInvert's recipe (genforce/idinvert, train_encoder): real photos x; E is trained to reconstruct them
through the frozen generator, x_rec = G(E(x)), with
    L_E = MSE(x_rec, x) + 5e-5 * MSE(VGG16 conv4_3(x_rec), VGG16 conv4_3(x)) + 0.08 * softplus(-D(x_rec))
and D with the logistic loss softplus(D(x_rec)) + softplus(-D(x)) plus R1 (gamma 10) on x; Adam lr 1e-4.
No code supervision: E only learns codes whose images match, which is what keeps them in the domain.

Here (documented in the profile's config and in the card of the trained file):
- x are the generator's own samples (no truncation unless asked), drawn fresh every step: the project has
  56 real faces, all of them inversion targets. So E never sees the real-to-generated gap it meets on
  the targets, and D separates generated images from their reconstructions, not photos.
- The feature term is the suite's perceptual distance (`perceptual`, weight `lambda_per`), or none: the
  ImageNet VGG16 weights cannot be had offline, and 0 is the mini profile's choice for the same reason
  as the F encoder's (steps, not loss terms, are what a CPU budget lacks).
- R1 is lazy (StyleGAN2's practice): every `r1_every` steps with weight r1_every x gamma / 2; its
  double backward is the step's most expensive part on a CPU.
- The discriminator is the project's residual StyleGAN2-style one (fzplus.training.discriminator) at the
  generator's widths.
Determinism: weights and samples come from `seed`; the sampler's state is checkpointed, so a resumed run
equals an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fzplus.encoders.base_code import EncoderFileError, generator_fingerprint, write_atomically
from fzplus.encoders.base_code_training import (
    HELD_OUT_SEED,
    describe_perceptual,
    frozen_parameters,
    resumable_training_state,
    sample_generated,
)
from fzplus.encoders.domain import (
    DomainEncoder,
    build_domain_encoder,
    domain_distance,
    domain_encoder_from_payload,
    domain_encoder_payload,
    encode_ws,
    read_domain_encoder_file,
)
from fzplus.encoders.recipes import DOMAIN
from fzplus.generator import Generator
from fzplus.training.discriminator import Discriminator

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) [N, 3, H, W] -> [N]


def build_discriminator(generator: Generator) -> Discriminator:
    channels = {int(r): int(c) for r, c in generator.synthesis.channels.items()}
    return Discriminator(resolution=generator.resolution, channels=channels).to(generator.w_avg.device)


def r1_penalty(discriminator: Discriminator, real: torch.Tensor) -> torch.Tensor:
    """mean over the batch of |grad_x D(x)|^2 at the real images."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(dim=1).mean()


def train_domain_encoder(
    generator: Generator,
    *,
    steps: int,
    batch_size: int = DOMAIN.batch_size,
    lr: float = DOMAIN.lr,
    lambda_adv: float = DOMAIN.lambda_adv,
    r1_gamma: float = DOMAIN.r1_gamma,
    r1_every: int = DOMAIN.r1_every,
    lambda_per: float = DOMAIN.lambda_per,
    perceptual: Perceptual | None = None,
    channel_base: int = DOMAIN.channel_base,
    channel_max: int = DOMAIN.channel_max,
    dense_rank: int | None = DOMAIN.dense_rank,
    truncation_psi: float = DOMAIN.truncation_psi,
    truncation_cutoff: int | None = DOMAIN.truncation_cutoff,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = DOMAIN.checkpoint_every,
    resume: bool = True,
    progress: bool = True,
) -> tuple[DomainEncoder, dict[str, list[float]]]:
    """Train E (and D) for `steps` steps; returns (E in eval mode, per-step history of 'loss', 'mse',
    'adversarial', 'perceptual', 'd_loss', 'r1'). checkpoint_path: written atomically every
    `checkpoint_every` steps and at the end; resumed from when it exists, its settings match and resume=True."""
    if generator.noise_mode == "random":
        raise ValueError("train_domain_encoder needs a generator with fixed noise: set generator.noise_mode = 'const'")
    if steps < 0 or batch_size < 1 or checkpoint_every < 1 or r1_every < 1:
        raise ValueError(
            "need steps >= 0, batch_size >= 1, checkpoint_every >= 1, r1_every >= 1; "
            f"got {steps}, {batch_size}, {checkpoint_every}, {r1_every}"
        )
    if lambda_per > 0 and perceptual is None:
        raise ValueError("lambda_per > 0 needs a perceptual distance (perceptual=...)")
    config = dict(
        batch_size=int(batch_size),
        lr=float(lr),
        lambda_adv=float(lambda_adv),
        r1_gamma=float(r1_gamma),
        r1_every=int(r1_every),
        lambda_per=float(lambda_per),
        perceptual=describe_perceptual(perceptual) if lambda_per > 0 else None,
        channel_base=int(channel_base),
        channel_max=int(channel_max),
        dense_rank=dense_rank,
        truncation_psi=float(truncation_psi),
        truncation_cutoff=truncation_cutoff,
        seed=int(seed),
    )
    fingerprint = generator_fingerprint(generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = build_domain_encoder(
            generator, channel_base=channel_base, channel_max=channel_max, dense_rank=dense_rank
        )
        discriminator = build_discriminator(generator)
    opt_e = torch.optim.Adam(encoder.parameters(), lr=lr)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {k: [] for k in ("loss", "mse", "perceptual", "adversarial", "d_loss", "r1")}
    start, path = 0, None if checkpoint_path is None else pathlib.Path(checkpoint_path)
    if path is not None and resume and path.exists():
        training = _resume_state(
            path, generator=generator, fingerprint=fingerprint, config=config, steps=steps, encoder=encoder
        )
        discriminator.load_state_dict(training["discriminator"])
        opt_e.load_state_dict(training["optimizer_e"])
        opt_d.load_state_dict(training["optimizer_d"])
        rng.set_state(training["rng_state"])
        history = {k: list(v) for k, v in training["history"].items()}
        start = int(training["step"])

    def save(step: int) -> None:
        training = dict(
            step=step,
            config=config,
            discriminator=discriminator.state_dict(),
            optimizer_e=opt_e.state_dict(),
            optimizer_d=opt_d.state_dict(),
            rng_state=rng.get_state(),
            history=history,
        )
        write_atomically(
            dict(domain_encoder_payload(encoder, generator=generator, fingerprint=fingerprint), training=training), path
        )

    encoder.train()
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        disable=not progress,
        desc="IDInvert encoder",
        dynamic_ncols=True,
    )
    with frozen_parameters(generator, perceptual):
        for step in bar:
            _, real = sample_generated(
                generator, batch_size, rng=rng, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
            )
            # E step: reconstruction through the frozen generator, and fool D
            fake = generator.synthesize(encoder(real))
            mse = (fake - real).square().mean()
            per = perceptual(fake, real).mean() if lambda_per > 0 else mse.new_zeros(())
            discriminator.requires_grad_(False)
            adversarial = F.softplus(-discriminator(fake)).mean()
            discriminator.requires_grad_(True)
            loss = mse + lambda_per * per + lambda_adv * adversarial
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"IDInvert encoder loss is {loss.item()} at step {step}; lower lr (now {lr})")
            opt_e.zero_grad(set_to_none=True)
            loss.backward()
            opt_e.step()
            # D step: logistic loss on real vs reconstructed, R1 on the real images
            d_loss = F.softplus(discriminator(fake.detach())).mean() + F.softplus(-discriminator(real)).mean()
            lazy = (
                r1_gamma > 0 and step % r1_every == 0
            )  # StyleGAN2's lazy R1: every r1_every steps, weighted r1_every x
            r1 = r1_penalty(discriminator, real) if lazy else d_loss.new_zeros(())
            opt_d.zero_grad(set_to_none=True)
            (d_loss + 0.5 * r1_gamma * r1_every * r1).backward()
            opt_d.step()
            for key, value in (
                ("loss", loss),
                ("mse", mse),
                ("perceptual", per),
                ("adversarial", adversarial),
                ("d_loss", d_loss),
                ("r1", r1),
            ):
                history[key].append(value.item())
            bar.set_postfix(mse=f"{mse.item():.4f}", adv=f"{adversarial.item():.3f}", d=f"{d_loss.item():.3f}")
            if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                save(step + 1)
    return encoder.eval(), history


def _resume_state(
    path: pathlib.Path,
    *,
    generator: Generator,
    fingerprint: str,
    config: dict[str, Any],
    steps: int,
    encoder: DomainEncoder,
) -> dict[str, Any]:
    payload = read_domain_encoder_file(path)
    if payload["generator_fingerprint"] != fingerprint:
        raise EncoderFileError(
            f"{path}: checkpoint was made for a generator with other weights; delete it or pass resume=False"
        )
    training = resumable_training_state(payload, path, config=config, steps=steps)
    encoder.load_state_dict(domain_encoder_from_payload(payload, path, generator=generator).state_dict())
    return training


@torch.no_grad()
def evaluate_domain_encoder(
    generator: Generator,
    encoder: DomainEncoder,
    *,
    num_samples: int = 64,
    batch_size: int = 16,
    seed: int = HELD_OUT_SEED,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image figures [num_samples] on held-out generated images x = G(ws): 'encoder' / 'w_avg': MSE of
    G(E(x)) and of G(w_avg) against x; 'code_mse': mean (E(x) - ws)^2 against the true codes; 'domain':
    the domain term at E(x), mean (E(x) - E(G(E(x))))^2."""
    rng = torch.Generator().manual_seed(seed)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("encoder", "w_avg", "code_mse", "domain")}
    for begin in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - begin)
        ws, images = sample_generated(
            generator, n, rng=rng, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
        )
        codes = encode_ws(encoder, images)
        mean = generator.w_avg[None, None].expand_as(ws)
        rows["encoder"].append((generator.synthesize(codes) - images).square().mean(dim=(1, 2, 3)))
        rows["w_avg"].append((generator.synthesize(mean) - images).square().mean(dim=(1, 2, 3)))
        rows["code_mse"].append((codes - ws).square().mean(dim=(1, 2)))
        rows["domain"].append(domain_distance(encoder, generator, codes))
    return {name: torch.cat(values) for name, values in rows.items()}


@torch.no_grad()
def domain_encoder_preview(
    generator: Generator,
    encoder: DomainEncoder,
    *,
    count: int = 8,
    seed: int = HELD_OUT_SEED,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> torch.Tensor:
    """Two rows of `count` held-out images for a grid, [2 * count, 3, R, R]: x = G(ws) and G(E(x))."""
    _, images = sample_generated(
        generator,
        count,
        rng=torch.Generator().manual_seed(seed),
        truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff,
    )
    return torch.cat([images, generator.synthesize(encode_ws(encoder, images))]).clamp(-1, 1)
