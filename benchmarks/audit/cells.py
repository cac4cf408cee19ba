"""The cell machinery that benchmarks.audit.recompute and benchmarks.audit.verdicts share: the tolerances, a table's
cells compared with the figures, words and bands recomputed for them (one Check each), and the per-image files read.

Tolerances (each Check's `tolerance` names its own; figures measured on the stale and the fresh ci runs):
  exact: counts, ids, booleans, words.
  FLOAT, 1e-9 relative + 1e-12 absolute: means, sds, t statistics, KIDs, margins, bounds, exact p-values (sign flips
    over all 2^n patterns for n <= EXACT_N, as the suite enumerates). Measured: at most 4e-15. A 1e-3 change fails.
  PIXEL, 1e-6 absolute: per-image MSE and SSIM. Measured: MSE 3.4e-8 (the suite's float32 path), SSIM 0.
  Monte-Carlo bands (Band) and verdict words at a boundary (Words): benchmarks.audit.verdicts.
Missing inputs, rows on one side only and repeated rows are failing Checks, never exceptions.
"""

from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.audit.checks import Check

REL, ABS, PIXEL, Z, TAIL, EXACT_N, RESAMPLES = 1e-9, 1e-12, 1e-6, 4.0, 1e-5, 16, 20000
FLOAT = f"{REL:g} relative + {ABS:g} absolute"


@dataclass(frozen=True)
class Band:
    """A Monte-Carlo cell: any value in [low, high] passes; `estimate` is the audit's own figure."""

    estimate: float
    low: float
    high: float
    tolerance: str


@dataclass(frozen=True)
class Words:
    """A word at a boundary: any of `allowed` passes."""

    allowed: tuple[str, ...]
    tolerance: str


def fail(subject: str, item: str, expected: str, found: str = "missing") -> Check:
    return Check("cell", subject, item, expected, found, False)


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _norm(value) -> str:
    """Key text in which "2" and "2.0" (CSV floats) match and names stay as they are."""
    return str(value) if math.isnan(_float(value)) else repr(_float(value))


def around(value: float) -> tuple[float, float]:
    """The FLOAT band of an exact figure."""
    return value - REL * abs(value) - ABS, value + REL * abs(value) + ABS


def _cell(subject: str, item: str, want, text: str) -> Check:
    """One cell: `want` is a word or flag (exact), an int (exact), a float (FLOAT), a Band or Words."""
    if isinstance(want, Words):
        return Check("cell", subject, item, " or ".join(want.allowed), text, text in want.allowed, None, want.tolerance)
    if isinstance(want, (str, bool)):
        return Check("cell", subject, item, str(want), text, text == str(want))
    found, exact = _float(text), isinstance(want, (int, np.integer))
    value, (low, high) = (want.estimate, (want.low, want.high)) if isinstance(want, Band) else (want, around(want))
    value, low, high = float(value), float(value if exact else low), float(value if exact else high)
    nan = math.isnan(value) or math.isnan(found)
    ok = math.isnan(value) and math.isnan(found) if nan else low <= found <= high
    diff = (0.0 if ok else None) if nan else abs(found - value)
    tolerance = want.tolerance if isinstance(want, Band) else "exact" if exact else FLOAT
    shown = repr(int(want) if exact else value) + (
        f" (passes in [{low!r}, {high!r}])" if isinstance(want, Band) else ""
    )
    return Check("cell", subject, item, shown, text, bool(ok), diff, tolerance)


def words(outcomes: set, why: str):
    """The word when the outcomes agree, else Words allowing each."""
    words = tuple(sorted(map(str, outcomes)))
    return words[0] if len(words) == 1 else Words(words, f"boundary ({why}): any of {', '.join(words)}")


def compare(results: pathlib.Path, name: str, keys: list[str], expected: dict[tuple, dict]) -> list[Check]:
    """Every expected cell against tables/<name>.csv; rows on one side only, or repeated, fail."""
    subject = f"tables/{name}.csv"
    if not (results / subject).is_file():
        return [fail(subject, "", "the table")]
    table = pd.read_csv(results / subject, dtype=str, keep_default_na=False)
    if not set(keys) <= set(table.columns):
        return [fail(subject, "key columns", ", ".join(keys), ", ".join(table.columns))]
    found: dict[tuple, list[dict]] = {}
    for record in table.to_dict("records"):
        found.setdefault(tuple(_norm(record[k]) for k in keys), []).append(record)
    checks = []
    for key, cells in expected.items():
        label, rows = "row " + " / ".join(map(str, key)), found.pop(tuple(map(_norm, key)), [])
        if len(rows) != 1:
            checks.append(fail(subject, label, "one row", f"{len(rows)} rows"))
            continue
        for column, want in cells.items():
            text, item = rows[0].get(column), f"{label} | {column}"
            checks.append(fail(subject, item, "the column") if text is None else _cell(subject, item, want, text))
    unexplained = "no such row: not derivable from the per-image rows"
    return checks + [fail(subject, "row " + " / ".join(key), unexplained, "a row") for key in found]


def read(results: pathlib.Path, relative: str, checks: list[Check]):
    """A per-image CSV (a DataFrame) or .npz (a dict), or None and a failing Check naming it."""
    path = results / relative
    if not path.is_file():
        checks.append(fail(relative, "", "the file"))
        return None
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"image_id": str})
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def mean(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.mean(values[~np.isnan(values)])) if (~np.isnan(values)).any() else math.nan


def sd(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.std(values[~np.isnan(values)], ddof=1)) if (~np.isnan(values)).sum() > 1 else math.nan


def run_config(results: pathlib.Path, config: dict | None) -> dict | None:
    path = results / "provenance.json"
    return config if config is not None else json.loads(path.read_text())["config"] if path.is_file() else None
