"""Inversion throughput on this machine: image-steps per second at batch 1 and batch 16.

    python -m benchmarks.perf.inversion_throughput [--space F/Z+] [--perceptual-size 64] [--threads N]

A 64x64 generator with the mini profile's channel widths (random weights: speed does not depend on
them), targets from another random generator, ST-LPIPS at `--perceptual-size`. The batch sizes are timed
in alternation, round after round, so that a noisy machine slows them alike and their ratio stays
meaningful; the median round is reported. Each round is a full `invert` call (initialisation, every
step, final render), as the pipeline runs it. Target: batch 16 >= 3x the throughput of batch 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import fzplus  # noqa: F401
from fzplus.generator import Generator
from fzplus.inversion import invert
from fzplus.perceptual import build_perceptual
from fzplus.training.mini_generator import MINI_CHANNELS

TARGET_SPEEDUP = 3.0


def random_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    G = Generator(resolution=64, channels=MINI_CHANNELS, mapping_layers=8)
    G.mapping.w_avg.copy_(G.mapping(torch.randn(4096, G.z_dim)).mean(0).detach())
    return G.eval().requires_grad_(False)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="inversion image-steps per second, batch 1 vs batch 16")
    p.add_argument("--space", default="F/Z+")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 2], help="steps per round, one per batch size")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--perceptual-size", type=int, default=64)
    p.add_argument("--base-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if len(args.steps) != len(args.batches):
        p.error("give one --steps value per batch size")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    G = random_generator(0).to(device)
    with torch.no_grad():
        targets = random_generator(1).to(device)(torch.randn(max(args.batches), 512, device=device)).clamp(-1, 1)
    perceptual = build_perceptual("stlpips-vgg", device=device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; space {args.space}, "
        f"64x64 mini widths, stlpips at {args.perceptual_size}"
    )

    rates: dict[int, list[float]] = {b: [] for b in args.batches}
    for round_index in range(args.rounds + 1):  # round 0 warms up allocators and kernels
        for batch, steps in zip(args.batches, args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            invert(
                targets[:batch],
                G,
                args.space,
                steps=steps,
                perceptual=perceptual,
                perceptual_size=args.perceptual_size,
                base_size=args.base_size,
                progress=False,
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            if round_index > 0:
                rates[batch].append(batch * steps / seconds)
                print(
                    f"round {round_index}: batch {batch:>3}: {steps} steps in {seconds:7.2f} s = "
                    f"{rates[batch][-1]:7.2f} image-steps/s",
                    flush=True,
                )

    base = statistics.median(rates[args.batches[0]])
    print(f"{'batch':>6}{'image-steps/s':>16}{'vs batch ' + str(args.batches[0]):>14}")
    for batch in args.batches:
        rate = statistics.median(rates[batch])
        print(f"{batch:>6}{rate:>16.2f}{rate / base:>13.2f}x")
    speedup = statistics.median(rates[args.batches[-1]]) / base
    verdict = "meets" if speedup >= TARGET_SPEEDUP else "misses"
    print(
        f"batch {args.batches[-1]} {verdict} the target of {TARGET_SPEEDUP:.0f}x "
        f"batch {args.batches[0]} ({speedup:.2f}x)"
    )


if __name__ == "__main__":
    main()
