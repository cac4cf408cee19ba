"""The audit's result and its two reports in the results folder: audit.md for a reader (a line per table or file
group, then every failure) and audit.json for the HTML report and other programs.

audit.json (FORMAT 1):
    format: 1
    mode: "run" (the pipeline's own audit, before its manifest: recomputation and provenance; it never fails the
          run) or "full" (`snakemake audit`, `python -m benchmarks.audit`: manifest, recomputation, provenance)
    passed: true when no check failed
    results_dir, audited_utc (ISO 8601), seconds (the audit's wall time)
    parts: the parts run, of "manifest", "recomputation", "provenance", "deep"
    deep: {"space": name (null: the run's first space), "images": n requested (re-run in whole batches)} or null
    counts: {"checked": n, "failed": n}
    groups: [{"name", "kind", "checked", "failed", "worst_difference" (null when no check is numeric), "passed"}]
    failures: [{"kind", "subject", "item", "expected", "found", "difference", "tolerance", "line"}], line being
              Check.describe()
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from benchmarks.audit.checks import Check
from fzplus.io import atomic_write_text

FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Group:
    """The checks of one table or file group, as audit.md's line says them."""

    name: str
    kind: str
    checked: int
    failed: int
    worst_difference: float | None

    @property
    def passed(self) -> bool:
        return self.failed == 0


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """What audit_run found. checks: every Check, in the order the parts ran; markdown_path, json_path: the reports."""

    results_dir: pathlib.Path
    mode: str
    parts: tuple[str, ...]
    checks: tuple[Check, ...]
    seconds: float
    audited_utc: str
    deep: dict[str, Any] | None = None
    markdown_path: pathlib.Path | None = None
    json_path: pathlib.Path | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    @property
    def groups(self) -> list[Group]:
        return summarise(self.checks)


def group_name(check: Check) -> str:
    """A table for a cell (its file), a top-level folder for the manifest's files, a record for provenance."""
    if check.kind == "file":
        top, nested, _ = check.subject.partition("/")
        return f"manifest: {top}/" if nested else "manifest: top-level files"
    return check.subject


def summarise(checks: Sequence[Check]) -> list[Group]:
    """One Group per group_name, in the order each first appears."""
    grouped: dict[str, list[Check]] = {}
    for check in checks:
        grouped.setdefault(group_name(check), []).append(check)
    groups = []
    for name, members in grouped.items():
        differences = [c.difference for c in members if c.difference is not None and not math.isnan(c.difference)]
        groups.append(
            Group(
                name=name,
                kind=members[0].kind,
                checked=len(members),
                failed=sum(not c.ok for c in members),
                worst_difference=max(differences) if differences else None,
            )
        )
    return groups


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def headline(result: AuditResult) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    return (
        f"{verdict}: {len(result.checks)} items checked, {len(result.failures)} failed "
        f"({result.mode} audit of {result.results_dir}: {', '.join(result.parts)}; {result.seconds:.1f} s)"
    )


def print_result(result: AuditResult) -> None:
    """The summary a terminal or Snakemake's log shows: a line per group, then every failure."""
    print(headline(result))
    for group in result.groups:
        worst = "" if group.worst_difference is None else f", worst difference {group.worst_difference:.3g}"
        verdict = "pass" if group.passed else f"FAIL ({group.failed} failed)"
        print(f"  {group.name}: {group.checked} checked{worst}: {verdict}")
    for check in result.failures:
        print(check.describe())
    print(f"reports: {result.markdown_path}, {result.json_path}")


def markdown(result: AuditResult) -> str:
    lines = [f"# Audit of {result.results_dir}", "", headline(result), "", f"Audited {result.audited_utc} (UTC)."]
    if result.deep:
        space = result.deep["space"] or "the run's first space"
        lines.append(f"Deep re-run of {space}: the first {result.deep['images']} images, in whole batches.")
    lines += ["", "| group | kind | items checked | failed | worst difference | result |", "|---|---|---|---|---|---|"]
    for group in result.groups:
        cells = (group.name, group.kind, group.checked, group.failed, _number(group.worst_difference))
        lines.append("| " + " | ".join(map(str, cells)) + f" | {'pass' if group.passed else 'FAIL'} |")
    lines += ["", "## Failures", ""]
    lines += [f"- {check.describe()}" for check in result.failures] or ["None."]
    return "\n".join(lines) + "\n"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def record(result: AuditResult) -> dict[str, Any]:
    """audit.json's content (see the module docstring)."""
    return dict(
        format=FORMAT,
        mode=result.mode,
        passed=result.passed,
        results_dir=str(result.results_dir),
        audited_utc=result.audited_utc,
        seconds=round(result.seconds, 2),
        parts=list(result.parts),
        deep=result.deep,
        counts=dict(checked=len(result.checks), failed=len(result.failures)),
        groups=[
            dict(
                name=g.name,
                kind=g.kind,
                checked=g.checked,
                failed=g.failed,
                worst_difference=_finite(g.worst_difference),
                passed=g.passed,
            )
            for g in result.groups
        ],
        failures=[
            {**dataclasses.asdict(c), "difference": _finite(c.difference), "line": c.describe()}
            for c in result.failures
        ],
    )


def write_reports(result: AuditResult, *, out_dir: str | os.PathLike) -> AuditResult:
    """Write audit.md and audit.json into out_dir (atomically); the result with their paths."""
    out = pathlib.Path(out_dir)
    md, js = out / "audit.md", out / "audit.json"
    atomic_write_text(md, markdown(result))
    atomic_write_text(js, json.dumps(record(result), indent=2, allow_nan=False) + "\n")
    return dataclasses.replace(result, markdown_path=md, json_path=js)


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
