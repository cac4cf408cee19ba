"""Training recipe of the embedded 64x64 mini StyleGAN2 (bootstrap target; see models/mini/MODEL_CARD.md), and of
the mini StyleGAN1 (`MiniTrainConfig(architecture="stylegan1")`, issue 28), trained the same way.

Recipe (why: two CPU cores, no dataset, a few hours):
1. Paired distillation warm start: the student's G(z) regresses the teacher's image for the paired code
   A z (teacher.TeacherSampler) with a multi-scale L1 loss. Regression converges in minutes to
   face-shaped but soft images.
2. Adversarial training on top, against fresh unpaired teacher samples: non-saturating loss, lazy R1,
   per-sample style mixing, EMA of G. The distillation weight decays linearly to zero over
   `distill_decay_steps`, so the final generator is a GAN, not a regressor (distillation alone would make
   G constant along the 412 directions of z that A discards).
Everything is resumable from `checkpoint.pt` in the run folder (atomic writes), deterministic for a seed
given the same number of threads, and logs progress lines plus periodic sample grids.

The StyleGAN1 student takes the recipe unchanged but for its constant's initialisation (`build_student` says
why): the trainer only uses what both generators share (map, synthesize, num_ws, noise_mode,
mapping.update_w_avg). So per-layer noise is random while training and constant in the EMA generator, style mixing
cuts over StyleGAN1's num_ws (10 at 64 px, as StyleGAN2's), and the losses read the final image, which is all
StyleGAN1 makes (it has no per-block ToRGB skips). Two parts of NVIDIA's StyleGAN1 recipe are left out: progressive
growing (the distillation warm start already gives the adversarial phase a stable start) and its mixing probability
of 0.9 (one recipe for both students keeps their comparison about the architecture).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fzplus.generator import Generator, StyleGAN1Generator
from fzplus.generator.interface import ARCHITECTURES, DEFAULT_ARCHITECTURE, StyleGenerator, architecture_of
from fzplus.images import to_uint8
from fzplus.io import atomic_write
from fzplus.training.discriminator import Discriminator
from fzplus.training.teacher import TeacherSampler

MINI_CHANNELS = {4: 256, 8: 256, 16: 128, 32: 64, 64: 32}
# The student's class for MiniTrainConfig.architecture. Both build from the same shape arguments, and the mini
# StyleGAN1 keeps MINI_CHANNELS: the same widths make the two students comparable, and its fp16 file is 12.0 MB
# (StyleGAN2's 11.2 MB; AdaIN's affines are twice as wide as modulation's, and there are no ToRGB per block).
STUDENTS = {"stylegan2": Generator, "stylegan1": StyleGAN1Generator}


@dataclasses.dataclass
class MiniTrainConfig:
    architecture: str = DEFAULT_ARCHITECTURE  # a key of STUDENTS
    resolution: int = 64
    channels: dict = dataclasses.field(default_factory=lambda: dict(MINI_CHANNELS))
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    batch_size: int = 16
    lr: float = 0.002
    betas: tuple = (0.0, 0.99)
    total_steps: int = 60_000
    distill_only_steps: int = 10_000  # phase 1
    distill_decay_steps: int = 20_000  # distillation weight 1 -> 0 over these steps after phase 1
    distill_weight: float = 10.0
    # The mapping network's equalised lr multiplier (0.01) keeps w nearly frozen for thousands of steps, which
    # stalls paired regression at a mean face (multiscale L1 0.34 after 400 steps vs 0.32 with the boost
    # and falling). During phase 1 its Adam lr is raised by this factor (effective rate = synthesis's);
    # from the adversarial phase on it trains at StyleGAN2's usual rate.
    mapping_lr_boost: float = 100.0
    mixing_prob: float = 0.5
    r1_gamma: float = 0.05  # stylegan2-ada's heuristic 0.0002 R^2 / batch for R=64, batch 16
    r1_every: int = 16
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    seed: int = 0
    bf16: bool = True
    log_every: int = 50
    grid_every: int = 1_000
    checkpoint_every: int = 250

    def __post_init__(self):
        if self.architecture not in STUDENTS:
            raise ValueError(f"architecture must be one of {sorted(STUDENTS)}, got {self.architecture!r}")

    def distill_weight_at(self, step: int) -> float:
        if step < self.distill_only_steps:
            return self.distill_weight
        frac = (step - self.distill_only_steps) / max(1, self.distill_decay_steps)
        return self.distill_weight * max(0.0, 1.0 - frac)


def multiscale_l1(x: torch.Tensor, y: torch.Tensor, *, levels: int = 4) -> torch.Tensor:
    """Per-image mean L1 at full size and 3 halvings (coarse levels weigh global colour and shape)."""
    loss = x.new_zeros(x.shape[0])
    for _ in range(levels):
        loss = loss + (x - y).abs().mean(dim=[1, 2, 3])
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return loss / levels


def build_student(config: MiniTrainConfig) -> StyleGenerator:
    """The untrained student of `config`: its architecture, resolution, widths and mapping depth."""
    c = config
    G = STUDENTS[c.architecture](
        resolution=c.resolution, z_dim=c.z_dim, w_dim=c.w_dim, channels=c.channels, mapping_layers=c.mapping_layers
    )
    if c.architecture == "stylegan1":
        # NVIDIA initialises StyleGAN1's constant to ones. Its layer instance-normalises constant + noise + bias, so
        # while the constant hardly varies over space its rounding errors are scaled up to unit variance: at init,
        # bf16 autocast changes the images by 21 % of their std (3 % with this init), and an fp16 export after a
        # few steps by more than their std. N(0, 1), rosinality's initialisation, starts it well conditioned.
        with torch.no_grad():
            G.synthesis.b4.const.normal_()
    return G


def mixed_ws(
    G: StyleGenerator, z: torch.Tensor, *, prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample style mixing: with probability `prob` layers >= a random cutoff take a second code.
    Returns ws [N, num_ws, w_dim] and the bool mask of unmixed samples."""
    n = z.shape[0]
    ws = G.map(z)
    mixed = torch.rand(n, generator=generator) < prob
    if mixed.any():
        z2 = torch.randn(n, G.z_dim, generator=generator)
        ws2 = G.map(z2)
        cutoff = torch.randint(1, G.num_ws, (n, 1), generator=generator)
        take2 = (torch.arange(G.num_ws)[None] >= cutoff) & mixed[:, None]
        ws = torch.where(take2[:, :, None], ws2, ws)
    return ws, ~mixed


def save_grid(images: torch.Tensor, path: pathlib.Path, *, cols: int = 8) -> None:
    """images [N, 3, R, R] in [-1, 1] -> one PNG grid."""
    x = to_uint8(images.clamp(-1, 1))
    n, r = x.shape[0], x.shape[1]
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * r, cols * r, 3), np.uint8)
    for i in range(n):
        grid[(i // cols) * r : (i // cols + 1) * r, (i % cols) * r : (i % cols + 1) * r] = x[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: Image.fromarray(grid).save(f, format="PNG"))


class MiniTrainer:
    def __init__(self, config: MiniTrainConfig, run_dir: str | os.PathLike):
        self.cfg, self.run_dir = config, pathlib.Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        c = config
        self.G = build_student(c)
        self.G.noise_mode = "random"
        self.D = Discriminator(resolution=c.resolution, channels=c.channels)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.G_ema.noise_mode = "const"
        mapping = list(self.G.mapping.parameters())
        in_mapping = {id(p) for p in mapping}
        synthesis = [p for p in self.G.parameters() if id(p) not in in_mapping]
        self.opt_G = torch.optim.Adam([dict(params=synthesis), dict(params=mapping)], lr=c.lr, betas=c.betas)
        # lazy R1: scale D's Adam as in StyleGAN2 so that the regularised steps stay comparable
        ratio = c.r1_every / (c.r1_every + 1)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=c.lr * ratio, betas=tuple(b**ratio for b in c.betas))
        self.teacher = TeacherSampler(student_z_dim=c.z_dim, seed=c.seed, resolution=c.resolution)
        self.rng = torch.Generator().manual_seed(c.seed + 1)
        self.step, self.images_seen, self.wall_seconds = 0, 0, 0.0
        self.grid_z = torch.randn(64, c.z_dim, generator=torch.Generator().manual_seed(12345))
        self.history: list[dict] = []
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        if self.checkpoint_path.exists():
            self._load(self.checkpoint_path)

    # ---- persistence ----------------------------------------------------------------------------
    def state(self) -> dict:
        return dict(
            config=dataclasses.asdict(self.cfg),
            step=self.step,
            images_seen=self.images_seen,
            wall_seconds=self.wall_seconds,
            G=self.G.state_dict(),
            G_ema=self.G_ema.state_dict(),
            D=self.D.state_dict(),
            opt_G=self.opt_G.state_dict(),
            opt_D=self.opt_D.state_dict(),
            rng=self.rng.get_state(),
            torch_rng=torch.get_rng_state(),
            history=self.history,
        )

    def _load(self, path: pathlib.Path) -> None:
        s = torch.load(path, map_location="cpu", weights_only=False)  # our own file: contains plain python history
        saved = architecture_of(s["config"])  # StyleGAN2 runs from before StyleGAN1 students carry no architecture
        if saved != self.cfg.architecture:
            raise ValueError(
                f"{path} is a {ARCHITECTURES[saved]} run, but this trainer builds a "
                f"{ARCHITECTURES[self.cfg.architecture]}: train with architecture {saved!r} or use another run folder"
            )
        for name in ("G", "G_ema", "D", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(s[name])
        self.rng.set_state(s["rng"])
        torch.set_rng_state(s["torch_rng"])
        self.step, self.images_seen, self.wall_seconds, self.history = (
            s["step"],
            s["images_seen"],
            s["wall_seconds"],
            s["history"],
        )
        print(
            f"resumed from {path} at step {self.step} "
            f"({self.images_seen / 1000:.0f} kimg, {self.wall_seconds / 3600:.2f} h)",
            flush=True,
        )

    def save_checkpoint(self) -> None:
        atomic_write(self.checkpoint_path, lambda f: torch.save(self.state(), f))

    # ---- one iteration -------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.bf16)

    def train_step(self) -> dict:
        c, G, D = self.cfg, self.G, self.D
        lam = c.distill_weight_at(self.step)
        adversarial = self.step >= c.distill_only_steps
        z = torch.randn(c.batch_size, c.z_dim, generator=self.rng)
        log = {"distill_weight": lam}
        self.opt_G.param_groups[1]["lr"] = c.lr * (1.0 if adversarial else c.mapping_lr_boost)

        # generator
        G.requires_grad_(True)
        D.requires_grad_(False)
        target = self.teacher.images_for(z) if lam > 0 else None  # fp32, outside autocast
        with self._autocast():
            if adversarial:
                ws, unmixed = mixed_ws(G, z, prob=c.mixing_prob, generator=self.rng)
            else:
                ws, unmixed = G.map(z), torch.ones(c.batch_size, dtype=torch.bool)
            fake = G.synthesize(ws).float()
            loss_G = fake.new_zeros(())
            if lam > 0 and unmixed.any():
                loss_distill = multiscale_l1(fake[unmixed], target[unmixed]).mean()
                loss_G = loss_G + lam * loss_distill
                log["distill_l1"] = loss_distill.item()
            if adversarial:
                loss_adv = F.softplus(-D(fake)).float().mean()
                loss_G = loss_G + loss_adv
                log["G_adv"] = loss_adv.item()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        G.mapping.update_w_avg(G.mapping(z).detach())

        # discriminator (reuses this step's fakes)
        if adversarial:
            G.requires_grad_(False)
            D.requires_grad_(True)
            real = self.teacher.sample(c.batch_size, generator=self.rng)
            with self._autocast():
                loss_D = (F.softplus(D(fake.detach())) + F.softplus(-D(real))).float().mean()
            self.opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            if self.step % c.r1_every == 0:
                real.requires_grad_(True)
                (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
                r1 = grad.square().sum(dim=[1, 2, 3]).mean()
                (r1 * (c.r1_gamma / 2) * c.r1_every).backward()
                log["r1"] = r1.item()
            self.opt_D.step()
            log["D"] = loss_D.item()

        self._update_ema()
        self.step += 1
        self.images_seen += c.batch_size
        return log

    @torch.no_grad()
    def _update_ema(self) -> None:
        c = self.cfg
        ema_nimg = min(c.ema_kimg * 1000, self.images_seen * c.ema_rampup) if c.ema_rampup else c.ema_kimg * 1000
        beta = 0.5 ** (c.batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---- loop ----------------------------------------------------------------------------------------
    def train(self, *, until_step: int | None = None, max_seconds: float | None = None) -> None:
        c = self.cfg
        until = c.total_steps if until_step is None else min(until_step, c.total_steps)
        started = time.time()
        window, window_t = [], time.time()
        log_file = open(self.run_dir / "log.jsonl", "a")
        try:
            while self.step < until:
                t0 = time.time()
                log = self.train_step()
                self.wall_seconds += time.time() - t0
                window.append(log)
                if self.step % c.log_every == 0:
                    mean = {k: float(np.mean([entry[k] for entry in window if k in entry])) for k in window[-1]}
                    rec = dict(
                        step=self.step,
                        kimg=self.images_seen / 1000,
                        s_per_it=(time.time() - window_t) / len(window),
                        hours=self.wall_seconds / 3600,
                        **mean,
                    )
                    self.history.append(rec)
                    log_file.write(json.dumps(rec) + "\n")
                    log_file.flush()
                    print(
                        " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()),
                        flush=True,
                    )
                    window, window_t = [], time.time()
                if self.step % c.grid_every == 0:
                    self.save_samples(self.run_dir / "samples" / f"step{self.step:07d}.png")
                if self.step % c.checkpoint_every == 0:
                    self.save_checkpoint()
                if max_seconds is not None and time.time() - started > max_seconds:
                    break
        finally:
            log_file.close()
            self.save_checkpoint()

    @torch.no_grad()
    def save_samples(self, path: pathlib.Path) -> None:
        save_grid(self.G_ema(self.grid_z), path)


def export_generator(
    run_dir: str | os.PathLike, out_path: str | os.PathLike, *, dtype: torch.dtype = torch.float16
) -> dict:
    """Write the run's EMA generator in the suite's own format (fp16 storage by default) with training
    metadata (steps, images seen, wall time, recipe) for the model card. Returns that metadata."""
    from fzplus.generator import save_generator

    state = torch.load(pathlib.Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = MiniTrainConfig(**{k: (tuple(v) if k == "betas" else v) for k, v in state["config"].items()})
    G = build_student(cfg)
    G.load_state_dict(state["G_ema"])
    metadata = dict(
        recipe="fzplus.training.mini_generator",
        teacher="gan-face-generate==1.1.1 (DCGAN, DigiFace1M)",
        steps=state["step"],
        images_seen=state["images_seen"],
        train_hours=round(state["wall_seconds"] / 3600, 3),
        config={k: (dict(v) if isinstance(v, dict) else v) for k, v in state["config"].items()},
    )
    metadata["config"]["channels"] = {str(k): v for k, v in cfg.channels.items()}
    save_generator(G, out_path, metadata=metadata, dtype=dtype)
    return metadata
