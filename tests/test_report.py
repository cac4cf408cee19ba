"""HTML report: built from a planted results folder (tables, figures, grids, CSVs, provenance), and from a
partial or empty one; self-contained and escaped."""

from __future__ import annotations

import base64
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

SPACES = {"f_z_plus": "F/Z+", "f_w_plus_pn": "F/W+(P_N)"}


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
    strength = pd.DataFrame(
        dict(family=["random"], z_image_distance_per_unit=[0.006], w_image_distance_per_unit=[0.004], z_over_w=[1.5])
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
                )
                for m, b, v in (("fidelity_mse", "lower", "better"), ("identity", "higher", "uninformative"))
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
    (root / "provenance.json").write_text(
        json.dumps(
            dict(
                profile="mini",
                generator="models/mini.pt",
                git_revision="abc123",
                seeds=dict(inversion=7),
                assets={"celeba": "sha256:deadbeef"},
                note="<script>alert(1)</script>",
            )
        )
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
    assert "abc123" in page and "sha256:deadbeef" in page and "<details>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # provenance text is escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page  # no external resources
    assert "not computed" not in page
    # the editing section opens with the verdicts, before the identity table and the other figures
    verdicts = re.search(r"Editing: verdicts</h2>.*?<tbody>(.*?)</tbody>", page, re.S).group(1)
    assert verdicts.count("<tr>") == 2 and "<td>better</td>" in verdicts and "<td>uninformative</td>" in verdicts
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
