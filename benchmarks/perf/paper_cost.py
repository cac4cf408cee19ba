"""What the `paper` profile costs at 1024 px: seconds per image-step and peak memory per stage at batch
1, 4 and 8 on this machine, and an estimate of the full paper run on one GPU.

    python -m benchmarks.perf.paper_cost [--batches 1 4 8] [--device cpu] [--threads N] [--gpu-tflops 60]

Stand-ins of the paper's networks with random weights (speed and memory do not depend on the weights):
NVIDIA's config-F 1024 generator, LPIPS-VGG at 256 (a torchvision-format random VGG16), InceptionResnetV1.
Every (stage, batch) runs in its own process, so its peak resident memory (CPU) or peak allocated memory
(CUDA) is its own. Stages:
  invert W+ / F/Z+   one Adam step of the paper's loss (generator forward + backward, LPIPS at 256), the
                     difference between 2-step and 1-step inversions (initialisation and final render excluded);
                     its FLOPs: 3x those of the step's forward (torch's counter cannot follow the backward)
  tune PTI           one step of PTI's tuning of the synthesis weights (MSE + LPIPS at 256), all images of
                     the batch at once (float16 deltas, vmap over per-image weights; spaces/_tuning.py)
  edit render        one edited image rendered (forward only), as the edit sweep does
  identity           facenet embedding of a 160 px face crop
The estimate multiplies the per-image costs by the paper run's counts (50 images x 17 spaces and methods x
1200 steps, 2 x 350 tuning steps, 2 x 5 x 1001 SAM steps; the sweep's 13 directions x 11 alphas per image and
space) and divides the measured CPU work by the ratio
of a GPU's sustained FLOP rate (--gpu-tflops, an assumption this script cannot measure) to the FLOP rate
measured here (torch's FLOP counter over the same step).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch

import fzplus  # noqa: F401

# 17 compared plugins: 11 invert through the whole generator (Z, Z+, W, W+, W+(P_N), S, IDInvert and the pivots of
# PTI, PTI w/ Z+, SAM and SAM w/ Z+), 6 from the 16x16 split (the F spaces); 2 of them tune the synthesis weights (at
# most 350 steps); SAM and SAM w/ Z+ then run 4 single-latent inversions (one per residual size) and the joint one,
# 1001 steps each, counted as W+ steps (a residual add is negligible beside the generator and LPIPS).
# IDInvert's step also renders G(w) and encodes it for its domain term: counted here as one W+ step, an underestimate
# (its mini invert job took 1.5x the CPU time of W+'s: 107 s vs 70 s), and its encoder's training is not counted.
PAPER = dict(
    images=50,
    full_spaces=11,
    split_spaces=6,
    steps=1200,
    tuning_methods=2,
    tuning_steps=350,
    sam_methods=2,
    sam_steps=5 * 1001,
    directions=13,
    alphas=11,
)
STAGES = ("invert W+", "invert F/Z+", "tune PTI", "edit render", "identity")


def random_vgg16(path: str) -> None:
    """A torchvision-format VGG16 state dict with random weights: the lpips-vgg trunk's file format."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)


def measure(stage: str, batch: int, device: str) -> dict:
    """Seconds per image (per step for inversions), FLOPs per image and peak memory of one stage."""
    from torch.utils.flop_counter import FlopCounterMode

    from fzplus.generator import Generator
    from fzplus.inversion import invert, render, resize_bicubic
    from fzplus.perceptual import build_perceptual

    dev = torch.device(device)
    G = Generator(resolution=1024).eval().requires_grad_(False).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    def flops(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    if stage.startswith("invert"):
        space = stage.split()[1]
        with tempfile.TemporaryDirectory() as tmp:
            random_vgg16(f"{tmp}/vgg16.pth")
            lpips = build_perceptual("lpips-vgg", device=dev, vgg16_weights=f"{tmp}/vgg16.pth")
        with torch.no_grad():
            targets = G(torch.randn(batch, G.z_dim, device=dev)).clamp(-1, 1)
        run = lambda steps: invert(
            targets,
            G,
            space,
            steps=steps,
            perceptual=lpips,
            perceptual_size=256,
            base_size=16,  # noqa: E731
            progress=False,
        )
        codes = run(1).codes  # also the warm-up: allocator, oneDNN primitives
        seconds = (timed(lambda: run(2)) - timed(lambda: run(1))) / batch
        # torch's FLOP counter cannot follow the engine's backward; a step is its forward (render from the
        # space's codes, LPIPS at 256) plus a backward of about twice that
        with torch.no_grad():
            forward = flops(
                lambda: lpips(resize_bicubic(render(codes, G, space).to(dev), 256), resize_bicubic(targets, 256))
            )
        work = 3 * forward / batch
    elif stage == "tune PTI":
        import spaces
        from fzplus.inversion.losses import ImageLosses
        from spaces.base import SpaceContext

        with tempfile.TemporaryDirectory() as tmp:
            random_vgg16(f"{tmp}/vgg16.pth")
            lpips = build_perceptual("lpips-vgg", device=dev, vgg16_weights=f"{tmp}/vgg16.pth")
        with torch.no_grad():
            targets = G(torch.randn(batch, G.z_dim, device=dev)).clamp(-1, 1)
        pti, ctx = spaces.get("PTI"), SpaceContext(generator=G)
        pivot = {"w": G.w_avg[None].repeat(batch, 1)}
        losses = ImageLosses(targets, lpips, 256)
        run = lambda steps: pti.refine(pivot, ctx, image_losses=losses, settings=dict(steps=steps, stop_at=0.0))  # noqa: E731
        run(1)
        seconds = (timed(lambda: run(2)) - timed(lambda: run(1))) / batch
        with torch.no_grad():  # the same FLOPs as rendering with the untuned weights
            forward = flops(
                lambda: lpips(
                    resize_bicubic(G.synthesize(G.w_avg[None, None].repeat(batch, G.num_ws, 1)), 256),
                    resize_bicubic(targets, 256),
                )
            )
        work = 3 * forward / batch
    elif stage == "edit render":
        ws = G.map(torch.randn(batch, G.z_dim, device=dev)).detach()
        with torch.no_grad():
            G.synthesize(ws)
            seconds = timed(lambda: G.synthesize(ws)) / batch
            work = flops(lambda: G.synthesize(ws)) / batch
    elif stage == "identity":
        from facenet_pytorch import InceptionResnetV1

        net = InceptionResnetV1(pretrained=None, classify=False).eval().to(dev)
        crops = torch.rand(batch, 3, 160, 160, device=dev) * 2 - 1
        with torch.no_grad():
            net(crops)
            seconds = timed(lambda: net(crops)) / batch
            work = flops(lambda: net(crops)) / batch
    else:
        raise ValueError(f"unknown stage {stage!r}; known: {STAGES}")
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return dict(stage=stage, batch=batch, seconds_per_image=seconds, gflop_per_image=work / 1e9, peak_mb=peak_mb)


def estimate(rows: list[dict], *, gpu_tflops: float) -> list[str]:
    """The paper run's total work per stage, in hours here and on the assumed GPU."""
    best = {}
    for r in rows:  # the batch with the lowest cost per image, as a run would choose
        if r["stage"] not in best or r["seconds_per_image"] < best[r["stage"]]["seconds_per_image"]:
            best[r["stage"]] = r
    spaces = PAPER["full_spaces"] + PAPER["split_spaces"]
    counts = {
        "invert W+": PAPER["images"]
        * (PAPER["full_spaces"] * PAPER["steps"] + PAPER["sam_methods"] * PAPER["sam_steps"]),
        "invert F/Z+": PAPER["images"] * PAPER["split_spaces"] * PAPER["steps"],
        "tune PTI": PAPER["images"] * PAPER["tuning_methods"] * PAPER["tuning_steps"],
        "edit render": PAPER["images"] * spaces * PAPER["directions"] * PAPER["alphas"],
        "identity": PAPER["images"] * spaces * PAPER["directions"] * PAPER["alphas"],
    }
    lines, total_here, total_gpu = [], 0.0, 0.0
    for stage, count in counts.items():
        if stage not in best:
            continue
        r = best[stage]
        here = count * r["seconds_per_image"] / 3600
        rate_here = r["gflop_per_image"] / r["seconds_per_image"]  # GFLOP/s achieved here
        gpu = count * r["gflop_per_image"] / (gpu_tflops * 1e3) / 3600
        total_here, total_gpu = total_here + here, total_gpu + gpu
        lines.append(
            f"{stage:<13} {count:>12,.0f} image-steps  {r['gflop_per_image']:>8.1f} GFLOP each  here {here:>9.1f} h "
            f"({rate_here:.0f} GFLOP/s)   GPU at {gpu_tflops:.0f} TFLOP/s: {gpu:>6.2f} h"
        )
    lines.append(
        f"{'total':<13} {'':>12}              {'':>8}            here {total_here:>9.1f} h"
        f"{'':>17}   GPU: {total_gpu:>6.2f} h "
        "(compute only: no data loading, no per-job start-up)"
    )
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description="paper-profile cost at 1024 px per stage and batch, and a full-run estimate"
    )
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--stages", nargs="+", default=list(STAGES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--gpu-tflops",
        type=float,
        default=20.0,
        help="sustained FP32 rate assumed for the GPU estimate: about 30 %% of an H100/H200's ~67 TFLOP/s FP32 peak, "
        "typical of convolution-bound training in FP32 (TF32 tensor cores would be faster)",
    )
    p.add_argument(
        "--one", nargs=2, metavar=("STAGE", "BATCH"), help=argparse.SUPPRESS
    )  # the per-measurement subprocess
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.device)))
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
        "config-F 1024, LPIPS-VGG at 256"
    )
    print(f"{'stage':<13}{'batch':>6}{'s/image':>10}{'GFLOP/image':>13}{'peak MB':>10}")
    rows = []
    for stage in args.stages:
        for batch in args.batches:
            command = [
                sys.executable,
                "-m",
                "benchmarks.perf.paper_cost",
                "--one",
                stage,
                str(batch),
                "--device",
                args.device,
            ]
            command += ["--threads", str(args.threads)] if args.threads else []
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(
                    f"{stage:<13}{batch:>6}  failed: "
                    f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
                )
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(
                f"{stage:<13}{batch:>6}{r['seconds_per_image']:>10.3f}{r['gflop_per_image']:>13.1f}{r['peak_mb']:>10.0f}",
                flush=True,
            )
    print(
        "\nfull paper run (50 images x 17 spaces and methods x 1200 steps, 2 x 350 tuning steps, "
        "2 x 5 x 1001 SAM steps; 13 directions x 11 alphas per image and space):"
    )
    for line in estimate(rows, gpu_tflops=args.gpu_tflops):
        print(line)


if __name__ == "__main__":
    main()
