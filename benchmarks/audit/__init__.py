"""Audit a results folder: could this run have produced these files, and do its tables follow from its rows?

    result = audit_run("results/ci")                    # manifest, recomputation, provenance
    result = audit_run("results/ci", deep=2)            # and re-run 2 images' inversion of one space
    result.passed, result.failures, result.groups       # also written to results/ci/audit.md and audit.json

The parts, each a list of benchmarks.audit.checks.Check:
- manifest (manifest.py): every file against results/<run>/MANIFEST, which the run's last rule writes;
- recomputation (recompute.py): every table cell and per-image score recomputed from the per-image rows along a
  path independent of the code that wrote them;
- provenance (provenance_check.py): asset sha256s against the mirror, the generator file, the code revision
  (recorded, known, clean), the current config against the recorded one;
- deep (deep.py, optional): the inversion of a few images re-run, codes and losses compared bitwise.

A part that cannot run to its end (a file so damaged that it cannot be read) is one failing Check naming the
error, so the audit always writes its reports. `python -m benchmarks.audit RESULTS_DIR` is the command line;
`snakemake audit` the workflow's target (workflow/rules/audit.smk).
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from benchmarks.audit.checks import Check
from benchmarks.audit.manifest import check_manifest
from benchmarks.audit.provenance_check import check_provenance
from benchmarks.audit.summary import AuditResult, now_utc, write_reports

# the kind of the failing Check that stands for a part that could not run
PART_KINDS = {"manifest": "file", "recomputation": "cell", "provenance": "provenance", "deep": "deep"}


def _part(name: str, run: Callable[[], Iterable[Check]]) -> list[Check]:
    """The part's checks, or one failing Check naming why it stopped: an audited folder may be damaged in any
    way, and the audit's job is then to say so in its report, not to stop before writing it."""
    try:
        return list(run())
    except Exception as exc:  # whatever a damaged file raises: reported with its type and message
        found = f"stopped: {type(exc).__name__}: {exc}"
        return [Check(PART_KINDS[name], name, "", "the part runs to its end", found, ok=False)]


def _recomputation(results_dir: pathlib.Path, config: Mapping[str, Any] | None) -> list[Check]:
    from benchmarks.audit.recompute import recompute_per_image_rows, recompute_tables

    return [*recompute_tables(results_dir, config=config), *recompute_per_image_rows(results_dir)]


def _deep(results_dir: pathlib.Path, *, images: int, space: str | None) -> list[Check]:
    from benchmarks.audit.deep import deep_check, run_config

    cfg = run_config(results_dir)
    return deep_check(results_dir, space=space or cfg["inversion"]["spaces"][0], images=images, config=cfg)


def audit_run(
    results_dir: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    deep: int = 0,
    deep_space: str | None = None,
    in_run: bool = False,
    ignore_keys: Sequence[str] = (),
) -> AuditResult:
    """Audit results_dir, write its audit.md and audit.json, and return the result.

    config: the current validated config (the `audit` target's invocation): recomputed with, and compared with
    the recorded one (None: provenance.json's config is used and no comparison is made).
    deep: re-run this many images (the first in targets.csv order, in whole batches) of deep_space (default: the
    run's first space). in_run: the pipeline's own audit, which runs before the manifest is written: no manifest
    part (mode "run" in audit.json). ignore_keys: config keys that change no output (the workflow's NO_EFFECT),
    left out of the comparison."""
    root = pathlib.Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist: pass a run's folder, e.g. results/ci")
    if deep < 0:
        raise ValueError(f"deep must be a number of images >= 0, got {deep}")
    started = time.perf_counter()
    parts: dict[str, Callable[[], Iterable[Check]]] = {} if in_run else {"manifest": lambda: check_manifest(root)}
    parts["recomputation"] = lambda: _recomputation(root, config)
    parts["provenance"] = lambda: check_provenance(root, config=config, ignore_keys=ignore_keys)
    if deep:
        parts["deep"] = lambda: _deep(root, images=deep, space=deep_space)
    checks = [check for name, run in parts.items() for check in _part(name, run)]
    result = AuditResult(
        results_dir=root,
        mode="run" if in_run else "full",
        parts=tuple(parts),
        checks=tuple(checks),
        seconds=time.perf_counter() - started,
        audited_utc=now_utc(),
        deep=dict(space=deep_space, images=deep) if deep else None,
    )
    return write_reports(result, out_dir=root)


__all__ = ["AuditResult", "Check", "audit_run"]
