"""Train (or resume) the mini generator. Snakemake script for the bootstrap rules, and a CLI:

python workflow/scripts/train_mini_generator.py --run-dir RUN [--architecture stylegan1] [--until-step N]
    [--max-hours H] [--threads T]
python workflow/scripts/train_mini_generator.py --run-dir RUN --export models/mini/generator.pt

The export reads the architecture from the run's checkpoint.
"""

from __future__ import annotations

import argparse
import signal

import torch

import fzplus  # noqa: F401
from fzplus.training.mini_generator import STUDENTS, MiniTrainConfig, MiniTrainer, export_generator


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--run-dir", required=True, help="folder for checkpoint.pt, log.jsonl and sample grids (resumed if present)"
    )
    p.add_argument(
        "--architecture",
        choices=list(STUDENTS),
        default=MiniTrainConfig.architecture,
        help="the student generator (default %(default)s); a resumed run must keep its own",
    )
    p.add_argument("--until-step", type=int, default=None)
    p.add_argument("--max-hours", type=float, default=None, help="stop (with a checkpoint) after this much wall time")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--export",
        default=None,
        metavar="PATH",
        help="instead of training: write the run's EMA generator (fp16, suite format) to PATH",
    )
    args = p.parse_args(argv)
    if args.export:
        metadata = export_generator(args.run_dir, args.export)
        print(
            f"wrote {args.export}: step {metadata['steps']}, "
            f"{metadata['images_seen'] / 1000:.0f} kimg, {metadata['train_hours']} h"
        )
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    # A stop request (SIGTERM from `kill`, Snakemake or a scheduler) leaves a checkpoint: background jobs of
    # a non-interactive shell ignore SIGINT, so SIGTERM is the signal that reaches them.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    trainer = MiniTrainer(MiniTrainConfig(architecture=args.architecture, seed=args.seed), args.run_dir)
    try:
        trainer.train(until_step=args.until_step, max_seconds=None if args.max_hours is None else args.max_hours * 3600)
    except KeyboardInterrupt:
        raise SystemExit(
            f"stopped at step {trainer.step}; checkpoint saved in {args.run_dir} (run again to resume)"
        ) from None


if __name__ == "__main__":
    main()
