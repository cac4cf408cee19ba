"""What an audit finds: one `Check` per audited item (a table cell, a file, a provenance fact, a re-run inversion),
shared by every part of the audit (manifest, recomputation, provenance, deep re-run) and by its report."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("file", "cell", "provenance", "deep")


@dataclass(frozen=True)
class Check:
    """kind: one of KINDS. subject: the file, relative to the results folder ("tables/table1.csv"), or the record
    ("provenance.json: git.revision"). item: what in it ("row F/Z+ | mse_mean"; "" for a whole file).
    expected: what the audit computed or what the manifest says; found: what the run's file holds.
    difference: |expected - found| for numbers, else None. tolerance: how close counts as equal, in words
    ("exact", "1e-9 relative", "bootstrap: 3 Monte-Carlo standard errors")."""

    kind: str
    subject: str
    item: str
    expected: str
    found: str
    ok: bool
    difference: float | None = None
    tolerance: str = "exact"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Check.kind must be one of {KINDS}, got {self.kind!r}")

    def describe(self) -> str:
        """One line naming the file, the item, the expected value and the value found."""
        where = f"{self.subject}: {self.item}" if self.item else self.subject
        diff = f" (difference {self.difference:.3g}, tolerance {self.tolerance})" if self.difference is not None else ""
        return f"{'ok' if self.ok else 'FAIL'} {where}: expected {self.expected}, found {self.found}{diff}"
