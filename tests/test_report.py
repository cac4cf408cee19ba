"""HTML report: built from a planted results folder (tables, figures, grids, CSVs, provenance), and from a
partial or empty one; self-contained and escaped. Its first screen says what was run (as provenance.json records
it), whether and how the run was audited, and the findings per configured pair; wide tables scroll in their own
box."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks.report.html import build_report
from benchmarks.report.tables import (
    identity_table,
    noninferiority_markdown,
    table1,
    table1_display,
    to_markdown,
    write_table,
)
from benchmarks.statistics.noninferiority import non_inferiority_table
from fzplus.edits.directions import find_directions
from fzplus.provenance import write_provenance

SPACES = {"f_z_plus": "F/Z+", "f_w_plus_pn": "F/W+(P_N)"}
PAIRS = [["F/Z+", "F/W+(P_N)"], ["PTI w/ Z+", "PTI"]]  # the second pair has no rows in the planted tables
GENERATOR_SHA256 = "5" * 64


def write_png(path, seed: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def plant_results(root) -> dict:
    """A results/<profile>/ folder as the pipeline leaves it; returns the PNG bytes planted."""
    rng = np.random.default_rng(0)
    image_ids = [f"{i:05d}" for i in range(4)]
    (root / "targets").mkdir(parents=True)
    pd.DataFrame(
        dict(image_id=image_ids, source_path="x", source_sha256="0", width=64, height=64, mode="RGB", conversions="")
    ).to_csv(root / "targets" / "targets.csv", index=False)
    metrics, identity = [], []
    for slug, space in SPACES.items():
        m = pd.DataFrame(
            dict(
                space=space,
                image_id=image_ids,
                mse=rng.uniform(0.01, 0.03, 4),
                ssim=rng.uniform(0.7, 0.9, 4),
                perceptual=rng.uniform(0.1, 0.2, 4),
            )
        )
        (root / "inversion" / slug).mkdir(parents=True)
        m.to_csv(root / "inversion" / slug / "metrics.csv", index=False)
        metrics.append(m)
        e = pd.DataFrame(
            [
                dict(
                    space=space,
                    family="ganspace",
                    direction="pc2",
                    image_id=i,
                    alpha=a,
                    similarity=0.9 - 0.1 * abs(a),
                    distance=0.1,
                    target_detected=i != "00001",
                    edited_detected=a != 2.0,
                )
                for i in image_ids
                for a in (-2.0, 0.0, 2.0)
            ]
        )
        (root / "edits" / slug).mkdir(parents=True)
        e.to_csv(root / "edits" / slug / "identity.csv", index=False)
        identity.append(e)
    t1 = table1(metrics)
    write_table(t1, root / "tables" / "table1.csv", markdown=to_markdown(table1_display(t1)))
    ni = non_inferiority_table(pd.concat(metrics), [("F/Z+", "F/W+(P_N)", "mse")], image_column="image_id")
    write_table(ni, root / "tables" / "noninferiority.csv", markdown=noninferiority_markdown(ni))
    it = identity_table(identity)
    write_table(it, root / "tables" / "identity.csv", markdown=to_markdown(it))
    directions = pd.concat(
        [
            find_directions("random", count=2, seed=0).diagnostics_table(),
            find_directions(
                "interfacegan",
                codes=rng.normal(size=(400, 8)),
                scores=rng.normal(size=400),
                names=["smile"],
                chosen=0.2,
            ).diagnostics_table(),
        ],
        ignore_index=True,
    )
    write_table(directions, root / "tables" / "directions.csv", markdown=to_markdown(directions))
    strength = pd.DataFrame(  # evaluate.tables_stage: one row per direction (tables.edit_strength_table)
        dict(
            family=["random", "interfacegan"],
            direction=["random_000", "smile"],
            z_image_distance_per_unit=[0.006, 0.002],
            w_image_distance_per_unit=[0.004, 0.004],
            z_over_w=[1.5, 0.5],
        )
    )
    write_table(strength, root / "tables" / "edit_strength.csv", markdown=to_markdown(strength))
    editing = dict(
        editing_verdicts=pd.DataFrame(
            [
                dict(
                    candidate="F/Z+",
                    reference="F/W+(P_N)",
                    metric=m,
                    better=b,
                    n=4,
                    n_missing=0,
                    mean_candidate=0.9,
                    mean_reference=0.8,
                    mean_improvement=0.1,
                    ci_low=0.05,
                    ci_high=0.15,
                    p_value=0.01,
                    verdict=v,
                    margin=0.02,
                    images_needed=needed,
                )
                for m, b, v, needed in (
                    ("fidelity_mse", "lower", "better", np.nan),
                    ("identity", "higher", "uninformative", np.nan),
                    ("identity_in_domain", "higher", "equivalent", np.nan),
                    ("realism_kid", "lower", "not resolved", 40.0),
                )
            ]
        ),
        editing_baselines=pd.DataFrame(
            dict(metric="identity", reference=["jpeg", "other"], kind=["ceiling", "floor"], value=[0.97, 0.85])
        ),
        editing_informative=pd.DataFrame(
            dict(metric="identity", space=list(SPACES.values()), informative=False, reason="below the floor")
        ),
        edit_fidelity=pd.DataFrame(dict(space="F/Z+", alpha=[0.0, 2.0], perceptual=[0.1, 0.2], mse=[0.01, 0.02])),
        realism=pd.DataFrame(dict(space="F/Z+", abs_alpha=[0.0, 2.0], n=[4, 8], kid=[0.001, 0.003])),
        matched_identity=pd.DataFrame(
            dict(space=["F/Z+"], direction=["smile"], level=[0.1], reached=[0.75], identity=[0.86])
        ),
    )
    for name, frame in editing.items():
        write_table(frame, root / "tables" / f"{name}.csv", markdown=to_markdown(frame))
    write_provenance(  # as evaluate.provenance_stage writes it
        root / "provenance.json",
        dict(
            profile="mini",
            run_name="mini-check",
            generator=dict(checkpoint="models/mini.pt", asset=None, random=None),
            statistics=dict(pairs=PAIRS, confidence=0.95),
            note="<script>alert(1)</script>",
        ),
        asset_hashes={"celeba": "sha256:deadbeef"},
        seeds={"seed": 7},
        extra=dict(generator=dict(file=str(root / "generator.pt"), sha256=GENERATOR_SHA256)),
    )
    return dict(
        figure=write_png(root / "figures" / "fig6_identity.png", 1),
        editing_figure=write_png(root / "figures" / "editing_metrics.png", 3),
        grid=write_png(root / "edits" / "f_z_plus" / "grids" / "ganspace.png", 2),
    )


def test_report_from_a_full_results_folder(tmp_path):
    root = tmp_path / "results" / "mini"
    planted = plant_results(root)
    out = build_report(root, title="Benchmark <mini>", perceptual_label="ST-LPIPS")
    assert out == root / "report.html"
    page = out.read_text()
    assert "<title>Benchmark &lt;mini&gt;</title>" in page
    for name in ("figure", "editing_figure"):
        assert base64.b64encode(planted[name]).decode() in page
    # the grid: a JPEG preview of the PNG, linked to it
    preview = re.search(
        r'<a href="edits/f_z_plus/grids/ganspace.png"><img alt="ganspace.png" src="data:image/jpeg;base64,([^"]+)">',
        page,
    )
    assert preview and base64.b64encode(planted["grid"]).decode() not in page
    with (
        Image.open(io.BytesIO(base64.b64decode(preview.group(1)))) as jpeg,
        Image.open(root / "edits/f_z_plus/grids/ganspace.png") as png,
    ):
        assert jpeg.format == "JPEG" and jpeg.size == png.size  # 8 px: not downscaled
    # Table 1: one row per space in paper order, mean ± sd, the perceptual label
    assert page.index("<td>F/Z+</td>") < page.index("<td>F/W+(P_N)</td>") and "ST-LPIPS" in page and " ± " in page
    t1 = pd.read_csv(root / "tables" / "table1.csv").set_index("space")
    assert f"{t1.loc['F/Z+', 'mse_mean']:.5f} ± {t1.loc['F/Z+', 'mse_sd']:.5f}" in page
    assert "(paired-t), margin 1e-08" in page  # the test used and its margin
    directions = re.search(r"Edit directions \(fit diagnostics\)</h2>.*?<tbody>(.*?)</tbody>", page, re.S).group(1)
    assert directions.count("<tr>") == 3 and "<td>smile</td>" in directions and "random_001" in directions
    # undetected faces: one target image of four, and the 4 edits at alpha = 2, per space
    undetected = re.search(r"Undetected faces per space</h2>.*?<tbody>(.*?)</tbody>", page, re.S).group(1)
    assert undetected.count("<tr>") == 2
    cells = "".join(f'<td class="num">{v}</td>' for v in (12, 4, 1, 4, 0))  # n, n_images, targets, edited, missing
    assert f"<td>F/Z+</td>{cells}</tr>" in undetected
    for href in (
        "targets/targets.csv",
        "inversion/f_z_plus/metrics.csv",
        "edits/f_w_plus_pn/identity.csv",
        "tables/table1.csv",
        "tables/noninferiority.md",
    ):
        assert f'href="{href}"' in page
    assert "sha256:deadbeef" in page and "<details>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # provenance text is escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page  # no external resources
    assert page.count("not computed") == 2  # only the findings of the configured pair the tables lack (PTI)
    # the editing section opens with the verdicts, before the identity table and the other figures
    verdicts = re.search(r"Editing: verdicts</h2>.*?<tbody>(.*?)</tbody>", page, re.S).group(1)
    assert verdicts.count("<tr>") == 4 and "<td>better</td>" in verdicts and "<td>uninformative</td>" in verdicts
    assert (
        page.index("Editing: verdicts")
        < page.index(base64.b64encode(planted["editing_figure"]).decode())
        < page.index("Identity similarity (mean")
    )


def test_report_links_are_relative_to_the_report(tmp_path):
    root = tmp_path / "results" / "mini"
    plant_results(root)
    out = build_report(root, out_path=tmp_path / "site" / "report.html", title="t")
    assert 'href="../results/mini/inversion/f_z_plus/metrics.csv"' in out.read_text()
    assert not [p for p in out.parent.iterdir() if p.name != "report.html"]  # written atomically, nothing left over


def test_report_of_a_partial_run(tmp_path):
    empty = tmp_path / "results" / "ci"
    empty.mkdir(parents=True)
    page = build_report(empty, title="empty").read_text()
    assert page.count("not computed") >= 9  # git, seeds, generator, images, spaces + 8 sections
    assert "ci (from the folder name)" in page
    partial = tmp_path / "results" / "mini"
    plant_results(partial)
    for path in ("tables/noninferiority.csv", "tables/identity.csv", "provenance.json"):
        (partial / path).unlink()
    page = build_report(partial, title="partial").read_text()
    assert "<td>F/Z+</td>" in page and re.search(r"Non-inferiority</h2>\s*<p class=\"missing\">not computed", page)


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the pipeline"):
        build_report(tmp_path / "absent", title="x")
    (tmp_path / "provenance.json").write_text("{not json")
    with pytest.raises(ValueError, match="provenance.json"):
        build_report(tmp_path, title="x")


def test_grid_previews_are_downscaled_jpegs_of_the_png(tmp_path):
    from benchmarks.report.html import PREVIEW_WIDTH, _embed_preview

    y, x = np.mgrid[0:600, 0 : 2 * PREVIEW_WIDTH]
    smooth = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "grid.png")
    with Image.open(io.BytesIO(base64.b64decode(_embed_preview(tmp_path / "grid.png")))) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (PREVIEW_WIDTH, 300)
        halved = np.asarray(Image.fromarray(smooth).resize((PREVIEW_WIDTH, 300), Image.LANCZOS), dtype=float)
        assert np.abs(np.asarray(jpeg, dtype=float) - halved).mean() < 4


def first_screen(page: str) -> str:
    """The summary, audit and findings: the page up to Table 1, as text."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page[page.index("<h2>Summary") : page.index("<h2>Table 1")]))


@pytest.mark.parametrize("dirty", [False, True])
def test_summary_says_what_was_run_as_provenance_records_it(tmp_path, dirty):
    root = tmp_path / "results" / "mini-check"
    plant_results(root)
    record = json.loads((root / "provenance.json").read_text())
    changes = [" M a.py", "?? b.py", " M c.py"] if dirty else []  # dirty: the work tree differed from its commit
    record["git"] = dict(revision="0123abcd" * 5, dirty=dirty, changes=changes, changes_total=len(changes))
    (root / "provenance.json").write_text(json.dumps(record))
    screen = first_screen(build_report(root, title="t").read_text())
    summary = screen[: screen.index("Audit:")]
    assert record["git"]["revision"] in summary and GENERATOR_SHA256 in summary and "not computed" not in summary
    assert ("dirty: 3 changed files" if dirty else "(clean)") in screen
    assert "mini, run name mini-check" in screen and "checkpoint models/mini.pt" in screen
    assert record["timestamps"]["collected_utc"] in screen and record["device"]["cpu_model"] in screen


AUDITS = {  # passed: as benchmarks.audit.summary writes audit.json (FORMAT 1); failed: the flat shape
    "passed": (
        dict(
            format=1,
            mode="run",
            passed=True,
            audited_utc="2026-12-06T23:37:55+00:00",
            parts=["recomputation", "provenance"],
            counts=dict(checked=120, failed=0),
            groups=[dict(name="tables/table1.csv", kind="cell", checked=100, failed=0, worst_difference=3.7e-8)],
            failures=[],
            future_key="ignored",
        ),
        [
            "passed: 120 checks (recomputation, provenance; the run's own audit, before its manifest), none failed;"
            " audited 2026-12-06T23:37:55+00:00",
            "tables/table1.csv: 100 checked, 0 failed, worst difference 3.7e-08",
        ],
    ),
    "failed": (
        dict(
            passed=False,
            scope="tables recomputed",
            checked=120,
            failed=7,
            groups={"table1": dict(checked=100, failed=7, worst_difference=1e-3)},
            failures=[f"tables/table1.csv: row F/Z+ | mse_mean, expected {i}" for i in range(6)]
            + [dict(kind="cell", line="tables/table1.csv: row F/Z+ | mse_mean, expected 6")],
        ),
        [
            "failed: 120 checks (tables recomputed), 7 failed",
            "mse_mean, expected 4",
            "... and 2 more in audit.json",
            "table1: 100 checked, 7 failed, worst difference 0.001",
        ],
    ),
    "not audited": (None, ["not audited: run `snakemake --cores 2 audit`"]),
}


@pytest.mark.parametrize("status", list(AUDITS))
def test_audit_line_says_passed_failed_or_not_audited(tmp_path, status):
    root = tmp_path / "results" / "mini"
    plant_results(root)
    audit, expected = AUDITS[status]
    if audit is not None:
        (root / "audit.json").write_text(json.dumps(audit))
    page = build_report(root, title="t").read_text()
    assert f'<p class="audit {status.replace(" ", "-")}"><strong>Audit:</strong>' in page
    screen = first_screen(page)
    assert all(text in screen for text in expected) and "ignored" not in screen
    assert "mse_mean, expected 5" not in screen  # the first five failures only


@pytest.mark.parametrize(
    "text, status",
    [
        ("{not json", "unreadable"),
        (json.dumps(dict(checked=3)), "unreadable"),
        ('{"passed": true, "failed": 2}', "failed"),
    ],
)
def test_an_audit_file_is_a_pass_only_when_it_says_so_and_counts_no_failure(tmp_path, text, status):
    root = tmp_path / "results" / "mini"
    plant_results(root)
    (root / "audit.json").write_text(text)
    page = build_report(root, title="t").read_text()
    assert f'<p class="audit {status}">' in page
    assert status == "failed" or "rerun `snakemake --cores 2 audit`" in first_screen(page)


def test_findings_name_each_configured_pair_with_its_verdicts(tmp_path):
    root = tmp_path / "results" / "mini"
    plant_results(root)
    screen = first_screen(build_report(root, title="t").read_text())
    findings = screen[screen.index("Findings per configured pair") :]
    ni = pd.read_csv(root / "tables" / "noninferiority.csv").iloc[0]
    result = "non-inferior" if ni.non_inferior else "not non-inferior"
    assert f"mse {result} (mean difference {ni.mean_difference:.3g}, upper bound {ni.confidence_bound:.3g})" in findings
    assert "fidelity_mse better (0.1 [0.05, 0.15])" in findings
    assert "identity_in_domain equivalent (0.1 [0.05, 0.15], margin ±0.02)" in findings
    assert "realism_kid not resolved (0.1 [0.05, 0.15]; needs ~40 images)" in findings
    assert "uninformative in this run: identity" in findings and "95 % interval" in findings
    # every configured pair, in the configured order; one without rows says so
    assert findings.index("F/Z+ vs F/W+(P_N)") < findings.index("PTI w/ Z+ vs PTI")
    assert "non-inferiority: not computed" in findings[findings.index("PTI w/ Z+ vs PTI") :]
    # a pair whose every editing metric is uninformative says so in words, not as an empty list of verdicts
    verdicts = pd.read_csv(root / "tables" / "editing_verdicts.csv").assign(verdict="uninformative")
    verdicts.to_csv(root / "tables" / "editing_verdicts.csv", index=False)
    screen = first_screen(build_report(root, title="t").read_text())
    assert "editing: every metric uninformative in this run (fidelity_mse, identity, identity_in_domain," in screen


def test_wide_tables_scroll_in_their_own_box_with_the_key_columns_first(tmp_path):
    root = tmp_path / "results" / "mini"
    plant_results(root)
    tuning = pd.DataFrame(
        {f"{space} {metric}": [0.5, 0.7] for space in ("W", "PTI", "SAM w/ Z+") for metric in ("MSE", "steps")}
    )
    tuning.insert(0, "image_id", ["00000", "mean"])
    write_table(tuning, root / "tables" / "tuning.csv", markdown=to_markdown(tuning))
    page = build_report(root, title="t").read_text()
    assert re.search(r"\.table-box \{[^}]*overflow-x: auto", page)
    assert page.count("<table>") == page.count('<div class="table-box"><table>')  # all but the summary's
    verdict_header = re.search(r"Editing: verdicts</h2>.*?<thead><tr>(.*?)</tr>", page, re.S).group(1)
    assert re.findall(r"<th[^>]*>([^<]+)</th>", verdict_header)[:4] == ["candidate", "reference", "metric", "verdict"]
    # Fig. 9 on its side: one row per space and metric, the mean before the images
    fig9 = re.search(r"Fig\. 9\).*?<thead><tr>(.*?)</tr></thead><tbody>(.*?)</tbody>", page, re.S)
    assert re.findall(r"<th[^>]*>([^<]+)</th>", fig9.group(1)) == ["space", "metric", "mean", "00000"]
    assert fig9.group(2).count("<tr>") == 6 and "<td>SAM w/ Z+</td><td>steps</td>" in fig9.group(2)
