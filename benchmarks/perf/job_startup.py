"""What every pipeline job pays before its own work: the interpreter and imports, the perceptual net, the
generator, dlib's models. The mini run has ~70 jobs, so a second here is a minute of its CPU time.

    python -m benchmarks.perf.job_startup [--rounds 5] [--generator results/mini/generator.pt]

Each figure is taken in a fresh interpreter, as a job starts, and the variants alternate round after round,
so their ratios hold on a noisy machine; medians are reported. stlpips-vgg is built both ways
(skip_random_init True, the default, and False, the package's own construction).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

IMPORTS = "import benchmarks.pipeline.editing, benchmarks.pipeline.evaluate, spaces, benchmarks.report.figures"


def fresh_process_seconds(setup: str, timed: str = "") -> float:
    """Wall seconds of `timed` after `setup` in a new interpreter; with `timed` empty, of the whole process."""
    if not timed:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", setup], check=True)
        return time.perf_counter() - t0
    code = f"{setup}\nimport time\nt0 = time.perf_counter()\n{timed}\nprint(time.perf_counter() - t0)"
    return float(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()[-1]
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="fixed per-job costs of the pipeline")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--generator", default=None, help="a generator.pt of the pipeline (timed when given)")
    args = p.parse_args(argv)

    build = "import torch\ntorch.set_num_threads(1)\nfrom fzplus.perceptual import build_perceptual"
    variants = {
        "python + stage imports": (IMPORTS, ""),
        "stlpips-vgg, random init skipped": (build, "build_perceptual('stlpips-vgg')"),
        "stlpips-vgg, package construction": (build, "build_perceptual('stlpips-vgg', skip_random_init=False)"),
        "dlib models (landmarks 5 + 68, descriptor)": (
            "from fzplus.faces.landmarks import load_dlib_model",
            "[load_dlib_model(m) for m in ('landmarks_5', 'landmarks_68', 'face_recognition')]",
        ),
    }
    if args.generator:
        variants["generator load"] = (
            "from fzplus.generator import load_generator",
            f"load_generator({args.generator!r})",
        )
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (setup, timed) in variants.items():
            timings[name].append(fresh_process_seconds(setup, timed))

    print(f"torch {torch.__version__}, 1 thread, fresh interpreters; medians of {args.rounds} rounds")
    for name, values in timings.items():
        print(f"{name:<46}{statistics.median(values):8.2f} s")
    ratio = statistics.median(timings["stlpips-vgg, package construction"]) / statistics.median(
        timings["stlpips-vgg, random init skipped"]
    )
    print(f"stlpips-vgg build: package construction / random init skipped = {ratio:.1f}x")


if __name__ == "__main__":
    main()
