"""Generator speed on this machine: forward and forward+backward seconds per image.

    python -m benchmarks.perf.generator_speed [--resolutions 64 256 1024] [--batches 1 8] [--threads N]

Config-F channel widths (NVIDIA's FFHQ generators) at every resolution, plus the mini generator's widths
at 64. Both modulated-conv paths (fast default and the fused reference) are timed side by side in the
same run, so their ratio is meaningful even on a noisy machine. forward+backward differentiates an image
loss with respect to ws, as inversion does.
"""

from __future__ import annotations

import argparse
import time

import torch

import fzplus  # noqa: F401
from fzplus.generator import Generator
from fzplus.training.mini_generator import MINI_CHANNELS


def seconds_per_image(G: Generator, *, batch: int, backward: bool, repeats: int) -> float:
    ws = G.map(torch.randn(batch, G.z_dim)).detach()
    times = []
    for _ in range(repeats + 1):  # first run warms up allocators and caches
        x = ws.clone().requires_grad_(backward)
        t0 = time.perf_counter()
        if backward:
            G.synthesize(x).square().mean().backward()
        else:
            with torch.no_grad():
                G.synthesize(x)
        times.append(time.perf_counter() - t0)
    return min(times[1:]) / batch


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="generator forward / forward+backward seconds per image")
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'generator':<18}{'batch':>6}{'path':>10}{'fwd s/img':>12}{'fwd+bwd s/img':>15}")
    configs = [("mini-64", dict(resolution=64, channels=MINI_CHANNELS))]
    configs += [(f"config-F-{r}", dict(resolution=r)) for r in args.resolutions]
    for name, kwargs in configs:
        G = Generator(**kwargs).eval().requires_grad_(False)
        for batch in args.batches:
            for fused in (False, True):
                G.fused_modconv = fused
                fwd = seconds_per_image(G, batch=batch, backward=False, repeats=args.repeats)
                bwd = seconds_per_image(G, batch=batch, backward=True, repeats=args.repeats)
                path = "fused" if fused else "fast"
                print(f"{name:<18}{batch:>6}{path:>10}{fwd:>12.4f}{bwd:>15.4f}", flush=True)


if __name__ == "__main__":
    main()
