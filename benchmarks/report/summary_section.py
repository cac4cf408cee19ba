"""The report's first screen: what was run, whether the run was audited and with what result, and the findings
in words. A reviewer who opens the report should not have to read a table or the provenance JSON to learn these.

What was run comes from provenance.json as fzplus.provenance and evaluate.provenance_stage write it: the profile and
run name under config, the generator file and its sha256 under extra.generator, the code revision under git, the
time under timestamps and the machine under device. A fact the record lacks (a partial run, an older record) is
shown as "not computed", never guessed.

The audit's result comes from audit.json, written by the audit rule before the report; its reading is kept in
`read_audit` alone, so that a change of that schema touches one function. The findings are read off
tables/noninferiority.csv and tables/editing_verdicts.csv, one entry per configured pair (config statistics.pairs,
as recorded in provenance.json; without a record, the pairs the tables hold).
"""

from __future__ import annotations

import datetime
import json
import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

NOT_COMPUTED = "not computed"
AUDIT_COMMAND = "snakemake --cores 2 audit"
FAILURES_SHOWN = 5
UNINFORMATIVE = "uninformative"


def read_provenance(results_dir: pathlib.Path) -> dict:
    """provenance.json as a dict ({} when absent); a file that is there but unreadable is an error naming it."""
    path = results_dir / "provenance.json"
    if not path.is_file():
        return {}
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); rerun the provenance rule") from error
    if not isinstance(provenance, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(provenance).__name__}")
    return provenance


def _field(record, *keys):
    """record[keys[0]][keys[1]]..., or None where any level is missing (older or partial records)."""
    for key in keys:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def _generator(provenance: dict) -> str:
    """The file the run used, its sha256, and where it came from (checkpoint, asset or seeded random weights)."""
    recorded = _field(provenance, "extra", "generator") or {}
    if "sha256" not in recorded:
        return NOT_COMPUTED
    source = _field(provenance, "config", "generator") or {}
    if source.get("checkpoint"):
        origin = f"checkpoint {source['checkpoint']}"
    elif source.get("asset"):
        origin = f"asset {source['asset']}"
    elif source.get("random"):
        settings = source["random"]
        origin = f"seeded random weights (resolution {settings.get('resolution')}, seed {settings.get('seed')})"
    else:
        origin = "source not recorded"
    return f"{recorded.get('file', 'file not recorded')}, sha256 {recorded['sha256']}; {origin}"


def _revision(provenance: dict) -> str:
    """The commit and whether the work tree matched it: numbers from a dirty tree are not those of the commit."""
    git = _field(provenance, "git")
    if not isinstance(git, dict):
        return NOT_COMPUTED
    if not git.get("revision"):
        return f"unknown ({git.get('error', 'no revision recorded')})"
    if git.get("dirty") is None:
        state = "clean or not: not recorded"
    elif git["dirty"]:
        changed = git.get("changes_total", len(git.get("changes", [])))
        state = f"dirty: {changed} changed file{'s' * (changed != 1)}"
    else:
        state = "clean"
    return f"{git['revision']} ({state})"


def _device(provenance: dict) -> str:
    info = _field(provenance, "device")
    if not isinstance(info, dict):
        return NOT_COMPUTED
    configured = _field(provenance, "config", "device")
    machine = f"{info.get('cpu_model', 'CPU')}, {info.get('cpu_count')} CPUs, torch threads {info.get('torch_threads')}"
    gpus = info.get("gpus") or []
    accelerators = f"{', '.join(gpus)} (CUDA {info.get('cuda_version')})" if gpus else "no GPU"
    return f"{configured or 'device not recorded'} on {machine}; {accelerators}"


def what_was_run(results_dir: pathlib.Path, provenance: dict, *, images: int | None, spaces: Sequence[str]) -> list:
    """(label, text) rows: the facts a reviewer checks before trusting any number of the report."""
    profile = _field(provenance, "config", "profile")
    run_name = _field(provenance, "config", "run_name")
    if profile is None:  # results/<run>/: without a record the folder name is all there is
        profile_text = f"{results_dir.name} (from the folder name)"
    else:
        profile_text = profile + (f", run name {run_name}" if run_name else "")
    recorded = _field(provenance, "timestamps", "collected_utc")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    seeds = _field(provenance, "seeds")
    return [
        ("results folder", str(results_dir)),
        ("profile", profile_text),
        ("generator", _generator(provenance)),
        ("code revision", _revision(provenance)),
        ("when", f"provenance recorded {recorded or NOT_COMPUTED}; this report written {now}"),
        ("device", _device(provenance)),
        ("seeds", ", ".join(f"{k} {v}" for k, v in seeds.items()) if isinstance(seeds, dict) else NOT_COMPUTED),
        ("images", str(images) if images is not None else NOT_COMPUTED),
        ("spaces", ", ".join(spaces) if spaces else NOT_COMPUTED),
    ]


@dataclass(frozen=True)
class AuditResult:
    """status: passed / failed / not audited / unreadable. headline: one sentence for the first screen.
    groups: one line per audited group (a table, the files, provenance). failures: the first FAILURES_SHOWN."""

    status: str
    headline: str
    groups: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_audit(results_dir: pathlib.Path) -> AuditResult:
    """audit.json of the results folder, read defensively (its schema is young; every reading of it is here): keys
    it does not know are ignored, and a result is "passed" only when the file says so and counts no failure; a file
    that says neither is "unreadable" rather than a guess. It reads benchmarks.audit.summary's FORMAT 1 (counts,
    parts, mode, audited_utc, groups as a list of {name, checked, failed, worst_difference}, failures as
    {line, ...}) as well as the flat shape {checked, failed, scope, groups: {name: {...}}, failures: [text]}."""
    path = results_dir / "audit.json"
    if not path.is_file():
        return AuditResult("not audited", f"not audited: run `{AUDIT_COMMAND}`")
    try:
        audit = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return AuditResult("unreadable", f"{path.name} cannot be read ({error}); rerun `{AUDIT_COMMAND}`")
    if not isinstance(audit, dict):
        return AuditResult("unreadable", f"{path.name} holds no audit record; rerun `{AUDIT_COMMAND}`")
    counts = audit["counts"] if isinstance(audit.get("counts"), dict) else audit
    checked, failed = _count(counts.get("checked")), _count(counts.get("failed"))
    listed, groups = audit.get("failures"), audit.get("groups")
    listed = listed if isinstance(listed, list) else []
    failures = [str(f.get("line") or f) if isinstance(f, dict) else str(f) for f in listed if f]
    if isinstance(groups, dict):
        groups = [dict(g, name=name) for name, g in groups.items() if isinstance(g, dict)]
    groups = [g for g in groups if isinstance(g, dict)] if isinstance(groups, list) else []
    if audit.get("passed") is False or failed or failures:
        status = "failed"
    elif audit.get("passed") is True:
        status = "passed"
    else:
        return AuditResult("unreadable", f"{path.name} records no result; rerun `{AUDIT_COMMAND}`")
    parts = audit.get("parts")
    scope = audit.get("scope") or (", ".join(map(str, parts)) if isinstance(parts, list) else "")
    if audit.get("mode") == "run":  # the pipeline's own audit runs before the manifest exists
        scope += "; the run's own audit, before its manifest"
    when = f"; audited {audit['audited_utc']}" if audit.get("audited_utc") else ""
    failed_text = f"{failed if failed is not None else len(failures)} failed" if status == "failed" else "none failed"
    headline = f"{status}: {checked if checked is not None else 'all'} checks ({scope or 'scope not recorded'}), "
    lines = []
    for group in groups:
        worst = group.get("worst_difference")
        worst_text = f", worst difference {worst:.3g}" if isinstance(worst, (int, float)) else ""
        name, checked_in, failed_in = (group.get(k, "?") for k in ("name", "checked", "failed"))
        lines.append(f"{name}: {checked_in} checked, {failed_in} failed{worst_text}")
    more = [f"... and {len(failures) - FAILURES_SHOWN} more in {path.name}"] if len(failures) > FAILURES_SHOWN else []
    return AuditResult(status, headline + failed_text + when, lines, failures[:FAILURES_SHOWN] + more)


def _number(value) -> str:
    return f"{value:.3g}"


def _pairs(provenance: dict, *tables: pd.DataFrame | None) -> list[tuple[str, str]]:
    configured = _field(provenance, "config", "statistics", "pairs")
    if configured:
        return [tuple(pair) for pair in configured]
    present = [table[["candidate", "reference"]] for table in tables if table is not None]
    return list(dict.fromkeys(map(tuple, pd.concat(present).itertuples(index=False)))) if present else []


def _noninferiority_words(rows: pd.DataFrame) -> str:
    """e.g. 'mse non-inferior (mean difference -0.003, upper bound 0.001)': the metric names are the CSV's, so that
    a reviewer finds the row they come from."""
    if rows.empty:
        return f"non-inferiority: {NOT_COMPUTED}"
    bound = "bound" if "bound" in rows.columns else "confidence_bound"
    words = []
    for row in rows.itertuples(index=False):
        side = f"{row.bound_side} " if "bound_side" in rows.columns else ""
        result = "non-inferior" if row.non_inferior else "not non-inferior"
        detail = f"mean difference {_number(row.mean_difference)}, {side}bound {_number(getattr(row, bound))}"
        words.append(f"{row.metric} {result} ({detail})")
    first = rows.iloc[0]
    return f"non-inferiority ({first.test}, margin {first.margin:g}): " + "; ".join(words)


def _verdict_words(rows: pd.DataFrame, *, confidence) -> str:
    """Each informative metric's verdict with the improvement (> 0 = candidate better) and its bootstrap interval;
    the uninformative metrics named once, since this run cannot judge them."""
    if rows.empty:
        return f"editing: {NOT_COMPUTED}"
    words = []
    for row in rows[rows.verdict != UNINFORMATIVE].itertuples(index=False):
        detail = f"{_number(row.mean_improvement)} [{_number(row.ci_low)}, {_number(row.ci_high)}]"
        margin, needed = getattr(row, "margin", math.nan), getattr(row, "images_needed", math.nan)  # newer columns
        if row.verdict == "equivalent" and pd.notna(margin):
            detail += f", margin ±{_number(margin)}"
        if row.verdict == "not resolved" and pd.notna(needed):
            detail += f"; needs ~{needed:.0f} images"
        words.append(f"{row.metric} {row.verdict} ({detail})")
    uninformative = ", ".join(rows.metric[rows.verdict == UNINFORMATIVE])
    if not words:
        return f"editing: every metric {UNINFORMATIVE} in this run ({uninformative})"
    interval = f"{confidence * 100:g} % interval" if isinstance(confidence, float) else "interval"
    rest = f"; {UNINFORMATIVE} in this run: {uninformative}" if uninformative else ""
    return f"editing, improvement of the candidate [{interval}]: " + "; ".join(words) + rest


def findings(
    provenance: dict, noninferiority: pd.DataFrame | None, verdicts: pd.DataFrame | None
) -> list[tuple[str, list[str]]]:
    """(pair, [non-inferiority sentence, editing sentence]) per configured pair, in the configured order."""
    confidence = _field(provenance, "config", "statistics", "confidence")
    empty = pd.DataFrame(columns=["candidate", "reference"])
    out = []
    for candidate, reference in _pairs(provenance, noninferiority, verdicts):
        rows = [
            empty if table is None else table[(table.candidate == candidate) & (table.reference == reference)]
            for table in (noninferiority, verdicts)
        ]
        lines = [_noninferiority_words(rows[0]), _verdict_words(rows[1], confidence=confidence)]
        out.append((f"{candidate} vs {reference}", lines))
    return out


__all__ = ["AuditResult", "NOT_COMPUTED", "findings", "read_audit", "read_provenance", "what_was_run"]
