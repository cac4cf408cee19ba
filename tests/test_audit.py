"""The audit (benchmarks/audit) on the session's ci run: an untouched run passes, and each tampering a reviewer
fears is caught and named (a CSV cell, a recon PNG, a per-image row, a table from other rows, the config); the
run's manifest and own audit; the `audit` target's exit code and report; the deep re-run's bitwise equality."""

from __future__ import annotations

import csv
import json
import pathlib
import shutil

import pandas as pd
import pytest
import torch

from benchmarks.audit import audit_run
from benchmarks.audit.checks import Check
from benchmarks.audit.deep import deep_check, run_config
from benchmarks.audit.manifest import check_manifest, read_manifest
from benchmarks.report.tables import table1, write_table
from conftest import snakemake
from fzplus.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture
def run(ci_run, tmp_path) -> pathlib.Path:
    """A copy of the ci run's results folder, to tamper with (the session's run stays as it was)."""
    _, out = ci_run
    copy = tmp_path / "results" / "ci"
    shutil.copytree(out, copy)
    return copy


def recorded_dirty(results: pathlib.Path) -> bool:
    return bool(json.loads((results / "provenance.json").read_text())["git"]["dirty"])


def findings(checks, results: pathlib.Path) -> list[Check]:
    """The failures, less the one a run made from uncommitted code always has (it is checked on its own)."""
    failures = [c for c in checks if not c.ok]
    dirty = [c for c in failures if c.subject == "provenance.json: git" and c.item == "dirty"]
    assert len(dirty) == recorded_dirty(results), [c.describe() for c in failures]
    return [c for c in failures if c not in dirty]


def rewrite_csv_cell(path: pathlib.Path, *, row: int, column: str, change) -> str:
    """Change one cell of a CSV in place, every other byte kept; returns the old text."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    index = rows[0].index(column)
    old = rows[row + 1][index]
    rows[row + 1][index] = change(old)
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return old


def test_the_run_writes_its_manifest_last_and_records_its_own_audit(ci_run):
    _, out = ci_run
    header, files = read_manifest(out / "MANIFEST")
    provenance = json.loads((out / "provenance.json").read_text())
    assert header["code_revision"] == provenance["git"]["revision"] and len(files) == int(header["files"])
    assert {"report.html", "provenance.json", "tables/table1.csv", "logs/report.log"} <= set(files)
    assert not {"MANIFEST", "audit.md", "audit.json"} & set(files)
    own = json.loads((out / "audit.json").read_text())
    assert own["mode"] == "run" and own["parts"] == ["recomputation", "provenance"]
    assert own["passed"] == (not recorded_dirty(out)) and own["counts"]["checked"] > 1000
    assert (out / "MANIFEST").stat().st_mtime >= (out / "report.html").stat().st_mtime


def test_an_untouched_run_passes_with_a_line_per_table_and_file_group(run):
    result = audit_run(run)
    assert findings(result.checks, run) == [] and result.passed == (not recorded_dirty(run))
    assert result.seconds < 60, result.seconds  # measured: a few seconds on 2 cores
    names = {group.name for group in result.groups}
    assert {"tables/table1.csv", "tables/editing_verdicts.csv", "manifest: inversion/", "provenance.json: git"} <= names
    report = json.loads((run / "audit.json").read_text())
    assert report["mode"] == "full" and report["parts"] == ["manifest", "recomputation", "provenance"]
    assert report["counts"]["checked"] == len(result.checks) and len(report["groups"]) == len(result.groups)
    markdown = (run / "audit.md").read_text()
    assert "| tables/table1.csv | cell |" in markdown and "## Failures" in markdown


def test_a_csv_cell_changed_by_1e_3_is_named_by_the_manifest_and_the_recomputation(run):
    old = rewrite_csv_cell(
        run / "tables" / "table1.csv", row=0, column="mse_mean", change=lambda v: repr(float(v) + 1e-3)
    )
    failures = findings(audit_run(run).checks, run)
    assert {(c.kind, c.subject) for c in failures} == {("file", "tables/table1.csv"), ("cell", "tables/table1.csv")}
    (cell,) = [c for c in failures if c.kind == "cell"]
    assert "mse_mean" in cell.item and abs(cell.difference - 1e-3) < 1e-9 and old[:8] in cell.expected


def test_a_swapped_recon_png_is_named(run):
    recon = run / "inversion" / "f_z_plus" / "recon"
    first, second = sorted(recon.glob("*.png"))[:2]
    swap = first.with_suffix(".tmp")
    first.rename(swap), second.rename(first), swap.rename(second)
    failures = findings(audit_run(run).checks, run)
    edited = {c.subject for c in failures if c.kind == "file"}
    assert edited == {f"inversion/f_z_plus/recon/{first.name}", f"inversion/f_z_plus/recon/{second.name}"}
    cells = [c for c in failures if c.kind == "cell"]
    assert {c.subject for c in cells} == {"inversion/f_z_plus/metrics.csv"}
    assert {first.stem, second.stem} <= {part for c in cells for part in c.item.replace("|", " ").split()}


def test_a_deleted_per_image_row_is_named(run):
    metrics = run / "inversion" / "f_z_plus" / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    deleted = lines.pop(2).split(",")[1]
    metrics.write_text("".join(lines))
    failures = findings(audit_run(run).checks, run)
    assert ("file", "inversion/f_z_plus/metrics.csv") in {(c.kind, c.subject) for c in failures}
    cells = [c for c in failures if c.kind == "cell"]
    assert any(c.subject == "inversion/f_z_plus/metrics.csv" and deleted in c.item for c in cells), cells
    assert any(c.subject == "tables/table1.csv" and "F/Z+" in c.item for c in cells)  # its n and means


def test_a_table_written_from_another_runs_rows_is_named(run):
    """Table 1 written by the suite's own code from other rows (the in-domain targets' inversions, 2 images per
    space instead of the 4 real ones), the budget-matched rows kept: a consistent-looking file from other rows."""
    others = [pd.read_csv(p, dtype={"image_id": str}) for p in sorted(run.glob("ground_truth/inversion/*/metrics.csv"))]
    own = [pd.read_csv(p, dtype={"image_id": str}) for p in sorted(run.glob("inversion/budget_matched/*/metrics.csv"))]
    order = list(pd.read_csv(run / "tables" / "table1.csv")["space"])
    write_table(table1(pd.concat([*others, *own]), spaces_order=order), run / "tables" / "table1.csv", markdown="")
    failures = findings(audit_run(run).checks, run)
    cells = [c for c in failures if c.kind == "cell"]
    assert {c.subject for c in cells} == {"tables/table1.csv"}
    assert any(c.item.startswith("row F/Z+") and "| n" in c.item for c in cells), [c.describe() for c in cells]
    assert {"tables/table1.csv", "tables/table1.md"} <= {c.subject for c in failures if c.kind == "file"}


def test_a_config_changed_after_the_run_is_named_with_both_values(run):
    current = load_config("ci", overrides={"inversion.lr": 0.5})
    failures = findings(audit_run(run, config=current).checks, run)
    (changed,) = failures
    assert (changed.subject, changed.item) == ("provenance.json: config", "inversion.lr")
    recorded = json.loads((run / "provenance.json").read_text())["config"]["inversion"]["lr"]
    assert "0.5" in changed.expected and str(recorded) in changed.found
    # an edit of the recorded config itself: the manifest names the file and its config sha256
    record = json.loads((run / "provenance.json").read_text())
    record["config"]["seed"] += 1
    (run / "provenance.json").write_text(json.dumps(record, indent=2))
    assert {c.item for c in check_manifest(run) if not c.ok} == {"", "config_sha256"}


def test_the_audit_target_fails_on_a_changed_config_and_keeps_its_report(run):
    workdir = run.parents[1]
    done = snakemake(workdir, "--cores", "1", "audit", "--config", "profile=ci", "inversion={lr: 0.5}")
    assert done.returncode != 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "inversion.lr" in done.stdout + done.stderr
    report = json.loads((run / "audit.json").read_text())
    assert not report["passed"] and any("inversion.lr" in f["line"] for f in report["failures"])
    assert "inversion.lr" in (run / "audit.md").read_text()


def test_a_deep_rerun_reproduces_codes_and_losses_bitwise_and_names_an_edited_code(run):
    """The first 2 images, rounded up to the run's batch of 4 (a batch of 2 rounds differently in float32),
    re-run with the pipeline's invert stage: codes and loss traces equal to the last bit; then one code nudged."""
    config = run_config(run)
    checks = deep_check(run, space="F/Z+", images=2, config=config)
    assert [c.describe() for c in checks if not c.ok] == []
    compared = {c.item.split(" | ")[0] for c in checks if c.subject == "inversion/f_z_plus/codes.pt"}
    assert len(compared) == config["inversion"]["batch_size"] == 4
    assert {c.subject for c in checks} >= {"inversion/f_z_plus/losses.csv", "provenance.json: device"}
    path = run / "inversion" / "f_z_plus" / "codes.pt"
    codes = torch.load(path, weights_only=True)
    image = sorted(codes)[0]
    codes[image]["z"].view(-1)[0] += 1e-6
    torch.save(codes, path)
    failures = [c for c in deep_check(run, space="F/Z+", images=2, config=config) if not c.ok]
    assert [(c.subject, c.item) for c in failures] == [("inversion/f_z_plus/codes.pt", f"{image} | z")]
