"""One self-contained HTML report of a results folder (results/<profile>/): tables, figures, image grids,
undetected-face counts, links to the per-image CSVs and the provenance.

Self-contained: figures are embedded as base64 PNG, the CSS is inline, nothing is fetched. The editing
grids are embedded as JPEG previews (at most PREVIEW_WIDTH px wide), each linked to its full PNG: as PNGs
they made the mini report 213 MB (51 grids of ~3 MB). Links to the grids and the per-image CSVs are relative
to the report, so they work when the results folder is copied as a whole.
Whatever is missing (a partial run) is shown as "not computed"; a file that exists but cannot be read
is an error naming it.

The first screen (benchmarks.report.summary_section) says what was run, whether the run was audited and with
what result, and the findings per configured pair in words. Every table sits in its own horizontally scrolling
box with its first column pinned, so that a wide table never pushes the page sideways; the editing verdict
table shows the verdict right after the pair and metric.

Files read (data contracts of the pipeline), all optional:
  provenance.json           what was run (config.profile, extra.generator, git, timestamps, device, seeds) for
                            the summary; every key (config, assets with their sha256, packages, ...) is shown in
                            the collapsible provenance section
  audit.json                the audit's result (summary_section.read_audit)
  targets/targets.csv       number of images
  tables/table1.csv, tables/noninferiority.csv, tables/identity.csv, tables/directions.csv, and the editing
                            tables (EDITING_TABLES: verdicts, baselines, informative flags, fidelity, realism,
                            matched identity)
  figures/**/*.png, edits/<slug>/grids/*.png
  fig8/table.csv, fig8/grids/*.png       the Fig. 8 section (benchmarks.pipeline.fig8), when the run has one
  targets/targets.csv, inversion/*/{metrics,losses}.csv, edits/*/identity.csv, tables/*.{csv,md}  (linked)

    from benchmarks.report.html import build_report
    build_report("results/mini", out_path="results/mini/report.html", title="F/Z+ benchmark (mini)")
"""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib

import jinja2
import pandas as pd
from markupsafe import Markup
from PIL import Image

from benchmarks.report.summary_section import NOT_COMPUTED, findings, read_audit, read_provenance, what_was_run
from benchmarks.report.tables import (
    ALL_FAMILIES,
    IDENTITY_FORMATS,
    NONINFERIORITY_FORMATS,
    noninferiority_display,
    order_spaces,
    table1_display,
    to_html,
    write_text,
)

LINKED_CSVS = (
    "targets/targets.csv",
    "inversion/*/metrics.csv",
    "inversion/*/losses.csv",
    "edits/*/identity.csv",
    "edits/*/fidelity.csv",
    "editing/*.csv",
    "ground_truth/targets/targets.csv",
    "tables/*.csv",
    "tables/*.md",
    "fig8/table.csv",
    "fig8/inversion/*/metrics.csv",
    "fig8/edits/*/edits.csv",
)
EDITING_TABLES = (
    "editing_verdicts",
    "editing_baselines",
    "editing_informative",
    "edit_fidelity",
    "realism",
    "matched_identity",
)
# the verdict table's columns a reader looks at first, moved to its left (the CSV keeps its order)
VERDICT_COLUMNS = ("candidate", "reference", "metric", "verdict", "mean_improvement", "ci_low", "ci_high")
EDITING_FIGURES = ("editing_metrics.png", "identity_vs_change.png")
PREVIEW_WIDTH, PREVIEW_QUALITY = (
    1200,
    85,
)  # a 1635 px mini grid: 3.3 MB PNG -> 0.35 MB JPEG, faces still sharper than the 64 px renders
UNDETECTED_COLUMNS = ["space", "n", "n_images", "targets_undetected", "edited_undetected", "n_missing"]

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; } th { background: #f3f3f3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.missing { color: #a33; font-style: italic; } .caption { color: #555; font-size: .9em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
details { margin: .4em 0; } summary { cursor: pointer; font-weight: 600; }
.table-box { overflow-x: auto; margin: .5em 0 1em; } .table-box table { margin: 0; }
.table-box th:first-child, .table-box td:first-child { position: sticky; left: 0; background: #fff; }
.table-box th:first-child { background: #f3f3f3; } td.text { min-width: 22em; }
.audit { padding: .4em .6em; border-left: .3em solid #999; background: #f7f7f7; }
.audit.passed { border-color: #2a7; } .audit.failed, .audit.unreadable { border-color: #c33; background: #fbeeee; }
.summary th { white-space: nowrap; } .findings li { margin: .3em 0; } .findings ul { margin: .2em 0; }
</style></head><body>
<h1>{{ title }}</h1>
{% macro missing() %}<p class="missing">{{ not_computed }}</p>{% endmacro %}
{% macro block(content) %}{% if content %}{{ content }}{% else %}{{ missing() }}{% endif %}{% endmacro %}
{% macro image(name, data) %}<figure><img alt="{{ name }}" src="data:image/png;base64,{{ data }}">
<figcaption class="caption">{{ name }}</figcaption></figure>{% endmacro %}
{% macro preview(name, data, href) %}<figure>\
<a href="{{ href }}"><img alt="{{ name }}" src="data:image/jpeg;base64,{{ data }}"></a>
<figcaption class="caption">{{ name }} (preview; click for the full PNG)</figcaption></figure>{% endmacro %}
<h2>Summary: what was run</h2>
<table class="summary"><tbody>
{% for key, value in summary %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</tbody></table>
<p class="audit {{ audit.status | replace(' ', '-') }}"><strong>Audit:</strong> {{ audit.headline }}</p>
{% if audit.failures %}<ul>{% for line in audit.failures %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
{% if audit.groups %}<details><summary>what the audit checked ({{ audit.groups | length }} groups)</summary>
<ul>{% for line in audit.groups %}<li>{{ line }}</li>{% endfor %}</ul></details>{% endif %}
<h2>Findings per configured pair</h2>
{% if findings %}<ul class="findings">{% for pair, lines in findings %}<li><strong>{{ pair }}</strong>
<ul>{% for line in lines %}<li>{{ line }}</li>{% endfor %}</ul></li>{% endfor %}</ul>
{% else %}{{ missing() }}{% endif %}
<h2>Table 1: reconstruction (mean ± sd over images)</h2>
{{ block(table1) }}
{% if tuning %}<h2>Methods on a pivot (the paper's Fig. 9): per image, each method and its pivot space alone</h2>
<p class="caption">PTI tunes the synthesis weights per image around the W inversion, PTI w/ Z+ around the Z+
inversion (spaces/_tuning.py); the edits of these rows are rendered with each image's tuned weights. SAM adds
feature residuals to the W+ inversion, SAM w/ Z+ to the Z+ one, each residual only on the face segments that
chose it (spaces/_sam.py; the chosen latents are the figures latent_maps_*). One row per space and metric (steps:
its generator passes per image), the mean over images first, then each image (tables/tuning.csv has them as
columns).</p>
{{ tuning }}{% endif %}
<h2>Non-inferiority</h2>
{% if noninferiority_caption %}<p class="caption">{{ noninferiority_caption }}</p>{% endif %}
{{ block(noninferiority) }}
<h2>Editing: verdicts</h2>
<p class="caption">Per configured pair and editing metric (benchmarks.statistics.editing): means per space, \
the mean per-image
improvement of the candidate (&gt; 0 = better) with its 95 % seeded bootstrap interval over images and a p-value,
and the margin: the smallest difference that matters, margin_fraction (config statistics.equivalence) of the
metric's floor_ceiling_gap (next table). The verdict: "better" / "worse" when the interval excludes 0, p &lt; 0.05
and the mean improvement is at least the margin; "equivalent" when the whole interval lies within &plusmn; margin
(and, per-image metrics, the two one-sided sign-flip tests give equivalence_p_value &lt; 0.05); "not resolved"
otherwise, with images_needed: the images the observed mean and spread (sd_improvement) would need to decide it
(power 0.8); "uninformative" when the
metric cannot tell either space's reconstructions from its floor in this profile (next table).</p>
{{ block(editing_verdicts) }}
<h2>Editing metrics: floors, ceilings, informative or not</h2>
<p class="caption">Each metric on reference pairs (median over images): ceilings (JPEG round trip, mirror image,
two sets of fresh samples for KID), floors (another target, gray, heavy blur, noise). A metric is informative for a
space when its reconstructions (alpha = 0) beat the best floor on significantly more than half of the images and by
at least the configured fraction of the floor-to-ceiling gap (benchmarks.metrics.sanity).</p>
{{ block(editing_baselines) }}
{{ block(editing_informative) }}
{% for name, data in editing_figures %}{{ image(name, data) }}{% endfor %}
<h2>Ground-truth edit fidelity (in-domain targets, mean per alpha)</h2>
<p class="caption">Seeded generator samples inverted into each space; distance between the edited inversion and the
same edit applied to the true codes (fzplus.edits.ground_truth). alpha = 0 is the reconstruction.
true_edit_perceptual / true_edit_mse: the size of that true edit (the true codes edited vs unedited), what the
fidelity is measured against: a small fidelity error next to a small true edit says little.</p>
{{ block(edit_fidelity) }}
<h2>Realism: KID of edited images to fresh samples, per |alpha|</h2>
{{ block(realism) }}
<h2>Identity at matched attribute change</h2>
<p class="caption">level: the attribute change (landmark score) every space's edits are compared at; reached: the
fraction of edits that get there (the others score the identity floor); identity: mean identity at that level.</p>
{{ block(matched_identity) }}
<h2>Identity similarity (mean per space and direction family)</h2>
{{ block(identity) }}
<h2>Edit directions (fit diagnostics)</h2>
<p class="caption">One row per direction; InterFaceGAN: SVM accuracy on held-out extreme codes
(validation_accuracy) and on the middle codes (remaining_accuracy); GANSpace: explained variance.</p>
{{ block(directions) }}
<h2>Edit strength per direction and domain</h2>
<p class="caption">Mean perceptual change of generated images per unit of alpha (edits on all layers, held-out
samples), of each Z direction and the W direction of the same family and name: a ratio z_over_w near 1 means
Z-type and W-type spaces were edited equally hard along it; far above 1, the W spaces barely edit there and their
fidelity to the edit says little (fzplus.edits.calibration; directions.unit.rule: matched sets the W unit so).</p>
{{ block(edit_strength) }}
<h2>Undetected faces per space</h2>
<p class="caption">targets_undetected: distinct target images without a detected face; edited_undetected:
edited images without one; n_missing: similarities that could not be computed.</p>
{{ block(undetected) }}
{% if fig8 %}<h2>Fig. 8: the compared spaces on a second generator</h2>
<p class="caption">The config's fig8 section (benchmarks.pipeline.fig8; the paper: F/Z+ against BDInvert's F/W+ on
StyleGAN1 LSUN Cat 256): its own generator and targets, inverted into each space by the run's invert stage and
edited along the generator's GANSpace components. The table has Table 1's columns per space and the edit strength:
the mean change from the reconstruction (perceptual distance, MSE) over images and components at each |alpha|;
with fig8.identity (faces), identity_at_|alpha|: the edits' mean identity similarity to their targets (at 0: the
reconstruction's), on the scale of the main run's identity floors and ceilings. One grid per component: a row
per target and space, the target first, then the edits (alpha 0 is the reconstruction).</p>
{{ fig8.table }}
{% for name, data, href in fig8.grids %}{{ preview(name, data, href) }}{% endfor %}{% endif %}
<h2>Figures</h2>
{% for name, data in figures %}{{ image(name, data) }}{% else %}{{ missing() }}{% endfor %}
<h2>Reconstruction and editing grids</h2>
{% for space_slug, grids in grid_groups %}<details open><summary>{{ space_slug }}</summary>
{% for name, data, href in grids %}{{ preview(name, data, href) }}{% endfor %}
</details>{% else %}{{ missing() }}{% endfor %}
<h2>Per-image data</h2>
{% if links %}<ul>{% for href in links %}<li><a href="{{ href }}">{{ href }}</a></li>{% endfor %}</ul>
{% else %}{{ missing() }}{% endif %}
<h2>Provenance</h2>
{% if provenance %}<details><summary>provenance.json (config, seeds, git revision, asset sha256s, ...)</summary>
{% for key, text in provenance %}<details><summary>{{ key }}</summary><pre>{{ text }}</pre></details>{% endfor %}
</details>{% else %}{{ missing() }}{% endif %}
</body></html>
"""


def _read_csv(path: pathlib.Path) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype={"image_id": str}) if path.is_file() else None


def _embed(path: pathlib.Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _embed_preview(path: pathlib.Path, *, max_width: int = PREVIEW_WIDTH, quality: int = PREVIEW_QUALITY) -> str:
    """A JPEG of the image, at most max_width px wide (Lanczos), base64."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > max_width:
            image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _relative(path: pathlib.Path, out_dir: pathlib.Path) -> str:
    """A link from the report's folder to path, with forward slashes."""
    return os.path.relpath(path, out_dir).replace(os.sep, "/")


def _html(frame: pd.DataFrame | None, **kwargs) -> Markup | None:
    """A frame as an HTML table for the template (to_html escapes every cell), in a box that scrolls sideways on its
    own: a table wider than the page (Fig. 9's 34 columns) must not hide the page's right side; None stays None."""
    return Markup(f'<div class="table-box">{to_html(frame, **kwargs)}</div>') if frame is not None else None


def _columns_first(frame: pd.DataFrame | None, columns) -> pd.DataFrame | None:
    """frame with those of `columns` it holds moved to the left, in that order, and the others after them."""
    if frame is None:
        return None
    first = [c for c in columns if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def _tuning_display(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """tables/tuning (one column per space and metric, one row per image and the mean) turned on its side: one row
    per space and metric with the mean first, so that every method's mean, SAM's included, is on screen, and only
    the per-image columns (as many as the run has images) scroll."""
    if frame is None:
        return None
    by_row = frame.set_index("image_id").T
    columns = ["mean", *(c for c in by_row.columns if c != "mean")]
    space, metric = zip(*(label.rsplit(" ", 1) for label in by_row.index))
    return pd.DataFrame(dict(space=space, metric=metric, **{c: by_row[c].to_numpy() for c in columns}))


def _fig8(results_dir: pathlib.Path, out_dir: pathlib.Path) -> dict | None:
    """The Fig. 8 section's table and grid previews (linked to their PNGs), or None where the run has no section."""
    table = _read_csv(results_dir / "fig8" / "table.csv")
    if table is None:
        return None
    grids = sorted((results_dir / "fig8" / "grids").glob("*.png"))
    return dict(
        table=_html(table, float_format="{:.4g}"),
        grids=[(path.name, _embed_preview(path), _relative(path, out_dir)) for path in grids],
    )


def report_context(
    results_dir: str | os.PathLike, *, out_path: str | os.PathLike, title: str, perceptual_label: str = "perceptual"
) -> dict:
    """Everything the template shows, as plain values (HTML fragments marked safe); None = not computed."""
    results_dir, out_dir = pathlib.Path(results_dir), pathlib.Path(out_path).parent
    provenance = read_provenance(results_dir)
    tables_dir = results_dir / "tables"
    table1 = _read_csv(tables_dir / "table1.csv")
    noninferiority = _read_csv(tables_dir / "noninferiority.csv")
    identity = _read_csv(tables_dir / "identity.csv")
    directions = _read_csv(tables_dir / "directions.csv")
    edit_strength = _read_csv(tables_dir / "edit_strength.csv")
    editing_frames = {name: _read_csv(tables_dir / f"{name}.csv") for name in EDITING_TABLES}
    shown = dict(editing_frames, editing_verdicts=_columns_first(editing_frames["editing_verdicts"], VERDICT_COLUMNS))
    editing = {name: _html(frame, float_format="{:.4g}") for name, frame in shown.items()}
    targets = _read_csv(results_dir / "targets" / "targets.csv")
    spaces = (
        order_spaces(table1.space)
        if table1 is not None
        else sorted(p.parent.name for p in results_dir.glob("inversion/*/metrics.csv"))
    )
    editing_figure_paths = [
        results_dir / "figures" / name for name in EDITING_FIGURES if (results_dir / "figures" / name).is_file()
    ]
    caption, noninferiority_frame = (
        noninferiority_display(noninferiority) if noninferiority is not None else (None, None)
    )
    undetected = identity[identity.family == ALL_FAMILIES][UNDETECTED_COLUMNS] if identity is not None else None
    grid_groups: dict[str, list] = {}
    for path in sorted(results_dir.glob("edits/*/grids/*.png")):
        grid_groups.setdefault(path.parent.parent.name, []).append(
            (path.name, _embed_preview(path), _relative(path, out_dir))
        )
    links = [_relative(p, out_dir) for pattern in LINKED_CSVS for p in sorted(results_dir.glob(pattern))]
    return dict(
        title=title,
        not_computed=NOT_COMPUTED,
        summary=what_was_run(
            results_dir, provenance, images=len(targets) if targets is not None else None, spaces=spaces
        ),
        audit=read_audit(results_dir),
        findings=findings(provenance, noninferiority, editing_frames["editing_verdicts"]),
        table1=_html(table1_display(table1, perceptual_label=perceptual_label) if table1 is not None else None),
        tuning=_html(_tuning_display(_read_csv(tables_dir / "tuning.csv")), float_format="{:.5g}"),
        noninferiority_caption=caption,
        noninferiority=_html(noninferiority_frame, float_format=NONINFERIORITY_FORMATS),
        identity=_html(identity, float_format=IDENTITY_FORMATS),
        undetected=_html(undetected),
        directions=_html(directions, float_format="{:.4g}"),
        edit_strength=_html(edit_strength, float_format="{:.4g}"),
        **editing,
        editing_figures=[(p.name, _embed(p)) for p in editing_figure_paths],
        figures=[
            (str(p.relative_to(results_dir / "figures")), _embed(p))
            for p in sorted((results_dir / "figures").rglob("*.png"))
            if p not in editing_figure_paths
        ],
        grid_groups=sorted(grid_groups.items()),
        fig8=_fig8(results_dir, out_dir),
        links=links,
        provenance=[
            (key, json.dumps(value, indent=2, sort_keys=True, default=str)) for key, value in provenance.items()
        ],
    )


def build_report(
    results_dir: str | os.PathLike,
    *,
    out_path: str | os.PathLike | None = None,
    title: str | None = None,
    perceptual_label: str = "perceptual",
) -> pathlib.Path:
    """Write the HTML report of `results_dir` atomically to out_path (default results_dir/report.html)."""
    results_dir = pathlib.Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist; run the pipeline first")
    out_path = pathlib.Path(out_path) if out_path is not None else results_dir / "report.html"
    title = title if title is not None else f"F/Z+ latent-space benchmark: {results_dir.name}"
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    context = report_context(results_dir, out_path=out_path, title=title, perceptual_label=perceptual_label)
    write_text(out_path, environment.from_string(TEMPLATE).render(**context))
    return out_path


__all__ = ["build_report", "report_context", "TEMPLATE"]
