"""One self-contained HTML report of a results folder (results/<profile>/): tables, figures, image grids,
undetected-face counts, links to the per-image CSVs and the provenance.

Self-contained: figures are embedded as base64 PNG, the CSS is inline, nothing is fetched. The editing
grids are embedded as JPEG previews (at most PREVIEW_WIDTH px wide), each linked to its full PNG: as PNGs
they made the mini report 213 MB (51 grids of ~3 MB). Links to the grids and the per-image CSVs are relative
to the report, so they work when the results folder is copied as a whole.
Whatever is missing (a partial run) is shown as "not computed"; a file that exists but cannot be read
is an error naming it.

Files read (data contracts of the pipeline), all optional:
  provenance.json           top-level keys shown in the summary when present: profile, generator,
                            git_revision, seeds; every key (config, assets with their sha256, packages,
                            device, ...) is shown in the collapsible provenance section
  targets/targets.csv       number of images
  tables/table1.csv, tables/noninferiority.csv, tables/identity.csv, tables/directions.csv, and the editing
                            tables (EDITING_TABLES: verdicts, baselines, informative flags, fidelity, realism,
                            matched identity)
  figures/**/*.png, edits/<slug>/grids/*.png
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

NOT_COMPUTED = "not computed"
SUMMARY_KEYS = ("generator", "git_revision", "seeds")
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
)
EDITING_TABLES = (
    "editing_verdicts",
    "editing_baselines",
    "editing_informative",
    "edit_fidelity",
    "realism",
    "matched_identity",
)
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
</style></head><body>
<h1>{{ title }}</h1>
{% macro missing() %}<p class="missing">{{ not_computed }}</p>{% endmacro %}
{% macro block(content) %}{% if content %}{{ content }}{% else %}{{ missing() }}{% endif %}{% endmacro %}
{% macro image(name, data) %}<figure><img alt="{{ name }}" src="data:image/png;base64,{{ data }}">
<figcaption class="caption">{{ name }}</figcaption></figure>{% endmacro %}
{% macro preview(name, data, href) %}<figure>\
<a href="{{ href }}"><img alt="{{ name }}" src="data:image/jpeg;base64,{{ data }}"></a>
<figcaption class="caption">{{ name }} (preview; click for the full PNG)</figcaption></figure>{% endmacro %}
<h2>Summary</h2>
<table><tbody>{% for key, value in summary %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</tbody></table>
<h2>Table 1: reconstruction (mean ± sd over images)</h2>
{{ block(table1) }}
{% if tuning %}<h2>Methods on a pivot (the paper's Fig. 9): per image, each method and its pivot space alone</h2>
<p class="caption">PTI tunes the synthesis weights per image around the W inversion, PTI w/ Z+ around the Z+
inversion (spaces/_tuning.py); the edits of these rows are rendered with each image's tuned weights. SAM adds
feature residuals to the W+ inversion, SAM w/ Z+ to the Z+ one, each residual only on the face segments that
chose it (spaces/_sam.py; the chosen latents are the figures latent_maps_*).</p>
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


def _short(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _read_provenance(results_dir: pathlib.Path) -> dict:
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


def _summary(results_dir: pathlib.Path, provenance: dict, table1: pd.DataFrame | None) -> list[tuple[str, str]]:
    # results/<profile>/: without a provenance file the folder name is the profile
    profile = _short(provenance["profile"]) if "profile" in provenance else f"{results_dir.name} (from the folder name)"
    summary = [("results folder", str(results_dir)), ("profile", profile)]
    summary += [(key, _short(provenance[key]) if key in provenance else NOT_COMPUTED) for key in SUMMARY_KEYS]
    targets = _read_csv(results_dir / "targets" / "targets.csv")
    summary.append(("images", str(len(targets)) if targets is not None else NOT_COMPUTED))
    spaces = (
        order_spaces(table1.space)
        if table1 is not None
        else sorted(p.parent.name for p in results_dir.glob("inversion/*/metrics.csv"))
    )
    summary.append(("spaces", ", ".join(spaces) if spaces else NOT_COMPUTED))
    return summary


def _html(frame: pd.DataFrame | None, **kwargs) -> Markup | None:
    """A frame as an HTML table for the template (to_html escapes every cell); None stays None."""
    return Markup(to_html(frame, **kwargs)) if frame is not None else None


def report_context(
    results_dir: str | os.PathLike, *, out_path: str | os.PathLike, title: str, perceptual_label: str = "perceptual"
) -> dict:
    """Everything the template shows, as plain values (HTML fragments marked safe); None = not computed."""
    results_dir, out_dir = pathlib.Path(results_dir), pathlib.Path(out_path).parent
    provenance = _read_provenance(results_dir)
    tables_dir = results_dir / "tables"
    table1 = _read_csv(tables_dir / "table1.csv")
    noninferiority = _read_csv(tables_dir / "noninferiority.csv")
    identity = _read_csv(tables_dir / "identity.csv")
    directions = _read_csv(tables_dir / "directions.csv")
    edit_strength = _read_csv(tables_dir / "edit_strength.csv")
    editing = {name: _html(_read_csv(tables_dir / f"{name}.csv"), float_format="{:.4g}") for name in EDITING_TABLES}
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
        summary=_summary(results_dir, provenance, table1),
        table1=_html(table1_display(table1, perceptual_label=perceptual_label) if table1 is not None else None),
        tuning=_html(_read_csv(tables_dir / "tuning.csv"), float_format="{:.5f}"),
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
