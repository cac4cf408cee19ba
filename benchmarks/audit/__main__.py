"""python -m benchmarks.audit RESULTS_DIR [--deep N] [--space NAME]

Audit a results folder (see benchmarks/audit/__init__.py), write its audit.md and audit.json, print a line per
group and every failure, and exit 1 when any check failed (0 when all passed; 2 for a usage error).
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.audit import audit_run
from benchmarks.audit.summary import print_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit", description=__doc__.split("\n\n")[1])
    parser.add_argument("results_dir", help="a run's results folder, e.g. results/mini")
    parser.add_argument("--deep", type=int, default=0, metavar="N", help="re-run N images' inversion, bitwise")
    parser.add_argument("--space", default=None, help="the space of --deep (name or slug; default: the first)")
    args = parser.parse_args(argv)
    if args.deep < 0:
        parser.error(f"--deep must be a number of images >= 0, got {args.deep}")
    try:
        result = audit_run(args.results_dir, deep=args.deep, deep_space=args.space)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    print_result(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
