"""The inversion loss's perceptual trunk in float32 vs bfloat16 (inversion.perceptual_precision), side by side.

    python -m benchmarks.perf.perceptual_precision [--space W+] [--batch 16] [--steps 8] [--rounds 3] [--threads 1]

Each round runs the same `invert` call (the mini widths at 64 px, random weights; ST-LPIPS at 64) once per
precision, in alternation, so that a noisy machine slows both alike; the median round's image-steps per second are
reported, with their ratio and how far the bfloat16 distance of the starting images lies from the float32 one.
bfloat16 pays only on CPUs with native bfloat16 (AVX512-BF16 or AMX); elsewhere this prints a ratio below 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.perf.inversion_throughput import random_generator
from fzplus.inversion import invert
from fzplus.perceptual import PRECISIONS, build_perceptual


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="inversion image-steps per second, perceptual trunk float32 vs bfloat16")
    p.add_argument("--space", default="W+")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    G = random_generator(0)
    with torch.no_grad():
        targets = random_generator(1)(torch.randn(args.batch, 512)).clamp(-1, 1)
    net = build_perceptual("stlpips-vgg")
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bfloat16: {native}; space {args.space}, "
        f"batch {args.batch}, {args.steps} steps per round"
    )
    rates: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    first_loss: dict[str, torch.Tensor] = {}
    for round_index in range(args.rounds + 1):  # round 0 warms up allocators and kernels
        for precision in PRECISIONS:
            t0 = time.perf_counter()
            result = invert(
                targets,
                G,
                args.space,
                steps=args.steps,
                perceptual=net,
                perceptual_size=64,
                perceptual_precision=precision,
                base_size=8,
                progress=False,
            )
            seconds = time.perf_counter() - t0
            first_loss[precision] = result.losses["perceptual"][:, 0]
            if round_index > 0:
                rates[precision].append(args.batch * args.steps / seconds)
                print(f"round {round_index}: {precision:>8}: {rates[precision][-1]:7.2f} image-steps/s", flush=True)
    f32, bf16 = (statistics.median(rates[p]) for p in PRECISIONS)
    error = ((first_loss["bfloat16"] - first_loss["float32"]).abs() / first_loss["float32"]).max()
    print(f"float32 {f32:.2f}, bfloat16 {bf16:.2f} image-steps/s: bfloat16 is {bf16 / f32:.2f}x float32")
    print(f"perceptual distance of the starting images: bfloat16 within {100 * error:.2f} % of float32 (worst image)")


if __name__ == "__main__":
    main()
