"""The mini StyleGAN1's training code (issue 28 part 4): fzplus.training.mini_generator with
MiniTrainConfig(architecture="stylegan1") trains, resumes and exports like the mini StyleGAN2's, on tiny 16 px
students against the real teacher (average-pooled to 16 px), plus the real 64 px student's file size.

The StyleGAN2 path was checked bit-identical by hand when StyleGAN1 students were added (losses, G, G_ema, D and
optimiser state after 2 distillation and 3 adversarial steps, before vs after the change); here its default and
the checkpoints written before StyleGAN1 existed (no "architecture" in their config) are pinned instead."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.studies.mini_generator_quality import latent_sensitivity, style_mixing_grid
from fzplus.generator import Generator, StyleGAN1Generator, load_generator
from fzplus.training.mini_generator import (
    MINI_CHANNELS,
    MiniTrainConfig,
    MiniTrainer,
    build_student,
    export_generator,
    multiscale_l1,
)

MB = 1e6
TINY = dict(
    resolution=16,
    channels={4: 32, 8: 32, 16: 16},
    z_dim=128,  # the teacher pairs 100 of the student's z coordinates: z_dim >= 100
    w_dim=32,
    mapping_layers=2,
    batch_size=8,
    distill_only_steps=2,
    distill_decay_steps=4,
    r1_every=2,
    log_every=1,
    grid_every=1000,
    checkpoint_every=1000,
)


def tiny_config(**changes) -> MiniTrainConfig:
    return MiniTrainConfig(**{"architecture": "stylegan1", **TINY, **changes})


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_optimiser_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> bool:
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    return sa.keys() == sb.keys() and all(same_tensors(sa[k], sb[k]) for k in sa)


def test_stylegan1_trainer_takes_distillation_and_adversarial_steps(tmp_path):
    trainer = MiniTrainer(tiny_config(), tmp_path)
    assert isinstance(trainer.G, StyleGAN1Generator) and trainer.G.num_ws == 6
    assert trainer.G.noise_mode == "random" and trainer.G_ema.noise_mode == "const"
    logs = [trainer.train_step() for _ in range(4)]
    assert all("distill_l1" in log and "G_adv" not in log and "D" not in log for log in logs[:2])
    assert all({"distill_l1", "G_adv", "D"} <= log.keys() for log in logs[2:])
    assert "r1" in logs[2] and "r1" not in logs[3]  # lazy R1 on every r1_every-th step
    assert all(math.isfinite(v) for log in logs for v in log.values())
    assert [log["distill_weight"] for log in logs] == [10.0, 10.0, 10.0, 7.5]
    assert trainer.step == 4 and trainer.images_seen == 32


def test_stylegan1_distillation_loss_falls(tmp_path):
    trainer = MiniTrainer(tiny_config(distill_only_steps=1000), tmp_path)
    z = torch.randn(32, trainer.cfg.z_dim, generator=torch.Generator().manual_seed(7))  # a held-out batch
    target = trainer.teacher.images_for(z)

    def held_out_loss() -> float:
        trainer.G.noise_mode = "const"
        with torch.no_grad():
            loss = multiscale_l1(trainer.G(z), target).mean().item()
        trainer.G.noise_mode = "random"
        return loss

    before = held_out_loss()
    for _ in range(20):
        trainer.train_step()
    after = held_out_loss()
    assert after < 0.9 * before, f"held-out multiscale L1 {before:.3f} -> {after:.3f} after 20 steps"


def test_stylegan1_checkpoint_resumes_to_the_same_state(tmp_path):
    cfg = tiny_config()
    first = MiniTrainer(cfg, tmp_path)
    for _ in range(3):  # into the adversarial phase: D and its optimiser have state too
        first.train_step()
    first.save_checkpoint()
    resumed = MiniTrainer(cfg, tmp_path)
    assert (resumed.step, resumed.images_seen) == (3, 24)
    for name in ("G", "G_ema", "D"):
        assert same_tensors(getattr(first, name).state_dict(), getattr(resumed, name).state_dict()), name
    assert same_optimiser_state(first.opt_G, resumed.opt_G) and same_optimiser_state(first.opt_D, resumed.opt_D)
    assert torch.equal(first.rng.get_state(), resumed.rng.get_state())
    # both continue identically (G's noise draws from torch's global generator, which the checkpoint restores)
    global_rng = torch.get_rng_state()
    first_logs = [first.train_step() for _ in range(2)]
    torch.set_rng_state(global_rng)
    assert [resumed.train_step() for _ in range(2)] == first_logs
    assert same_tensors(first.G.state_dict(), resumed.G.state_dict())
    with pytest.raises(ValueError, match="is a StyleGAN1 run, but this trainer builds a StyleGAN2"):
        MiniTrainer(tiny_config(architecture="stylegan2"), tmp_path)


def test_stylegan1_export_loads_back_as_the_same_generator(tmp_path):
    trainer = MiniTrainer(tiny_config(), tmp_path / "run")
    for _ in range(3):
        trainer.train_step()
    trainer.save_checkpoint()
    z = torch.randn(8, trainer.cfg.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = trainer.G_ema(z)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.float16, 2e-2 * expected.std().item())):
        path = tmp_path / f"generator-{dtype}.pt"
        metadata = export_generator(tmp_path / "run", path, dtype=dtype)
        G = load_generator(path)
        assert isinstance(G, StyleGAN1Generator) and G.architecture == "stylegan1" and G.noise_mode == "const"
        assert metadata["steps"] == 3 and metadata["config"]["architecture"] == "stylegan1"
        assert G.checkpoint_metadata["config"]["architecture"] == "stylegan1"
        with torch.no_grad():
            difference = (G(z) - expected).abs().max().item()
        assert difference < tolerance, f"{dtype}: images differ by {difference:.2e}"


def test_the_64px_stylegan1_student_exports_under_25_mb(tmp_path):
    cfg = MiniTrainConfig(architecture="stylegan1")
    assert cfg.channels == MINI_CHANNELS and cfg.resolution == 64  # the mini StyleGAN2's widths
    MiniTrainer(cfg, tmp_path / "run").save_checkpoint()  # untrained: the size depends on the shape only
    export_generator(tmp_path / "run", tmp_path / "generator.pt")
    size = (tmp_path / "generator.pt").stat().st_size
    assert size < 25 * MB, f"{size / MB:.1f} MB"
    G = load_generator(tmp_path / "generator.pt")
    assert isinstance(G, StyleGAN1Generator) and G.num_ws == 10 and G.resolution == 64


def test_bf16_training_keeps_stylegan1_images_close_to_fp32():
    # The constant's layer instance-normalises constant + noise + bias: with NVIDIA's all-ones constant, bf16 rounding
    # changed the images by 21 % of their std at init; build_student's N(0, 1) constant keeps it at 3 % (StyleGAN2: 1 %)
    torch.manual_seed(0)
    G = build_student(MiniTrainConfig(architecture="stylegan1"))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.normal_(0.0, 0.1)
        z = torch.randn(4, G.z_dim)
        full = G(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = G(z).float()
    assert (full - half).abs().mean() < 0.05 * full.std()


def test_stylegan2_stays_the_default_and_its_old_runs_resume_and_export_as_stylegan2(tmp_path):
    assert MiniTrainConfig().architecture == "stylegan2"
    assert type(build_student(MiniTrainConfig())) is Generator
    cfg = tiny_config(architecture="stylegan2")
    trainer = MiniTrainer(cfg, tmp_path / "run")
    trainer.train_step()
    state = trainer.state()
    del state["config"]["architecture"]  # as every run before StyleGAN1 students wrote it
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    assert MiniTrainer(cfg, tmp_path / "run").step == 1
    export_generator(tmp_path / "run", tmp_path / "generator.pt")
    G = load_generator(tmp_path / "generator.pt")
    assert type(G) is Generator and G.architecture == "stylegan2"
    with pytest.raises(ValueError, match="is a StyleGAN2 run, but this trainer builds a StyleGAN1"):
        MiniTrainer(tiny_config(), tmp_path / "run")


def test_quality_study_measures_run_on_a_stylegan1_student():
    torch.manual_seed(0)
    G = build_student(tiny_config(resolution=32, channels={4: 16, 8: 16, 16: 8, 32: 8})).eval()
    coarse = G.first_detail_layer(16)
    assert coarse == 4  # the study's coarse layers: 4x4 and 8x8, as for the mini StyleGAN2
    rows, cols = torch.randn(2, G.z_dim), torch.randn(3, G.z_dim)
    grid = style_mixing_grid(G, rows, cols, coarse_layers=coarse)
    ws = G.map(cols[2:3]).clone()
    ws[:, :coarse] = G.map(rows[1:2])[:, :coarse]
    with torch.no_grad():
        assert grid.shape == (12, 3, 32, 32) and torch.allclose(grid[2 * 4 + 3], G.synthesize(ws)[0], atol=1e-3)
    projection = torch.linalg.qr(torch.randn(G.z_dim, 100))[0].t()
    sensitivity = latent_sensitivity(G, projection, samples=16)
    assert sensitivity["paired_subspace"] > 0 and sensitivity["complement"] > 0
