"""Result tables: Table 1 (reconstruction), identity similarity per space x direction family, and the
non-inferiority table, as DataFrames, markdown and HTML (no `tabulate` needed), written atomically.

Inputs are the long frames of the data contract (one row per image, or per edit):
  metrics:  space, image_id, mse, ssim, perceptual[, image_steps] (inversion/<slug>/metrics.csv; image_steps: the
            generator forward + backward passes the image cost, every stage of its method)
  identity: space, family, direction, image_id, alpha, similarity, distance, target_detected,
            edited_detected                                    (edits/<slug>/identity.csv)
  noninferiority: the frame of benchmarks.statistics.noninferiority.non_inferiority_table.
`collect_csvs(results_dir, pattern)` concatenates the per-space CSVs of a results folder.
"""

from __future__ import annotations

import html
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from fzplus.io import atomic_write
from spaces import PAPER_SPACE_ORDER, budget_matched_name, order_spaces
from spaces import get as spaces_get

RECONSTRUCTION_METRICS = ("mse", "ssim", "perceptual")
ALL_FAMILIES = "all"
TEST_DESCRIPTIONS = {  # what each test of benchmarks.statistics.noninferiority.TESTS is, for table captions
    "paired-t": "paired one-sided t-test of the per-image differences against the margin",
    "wilcoxon": "one-sided Wilcoxon signed-rank test of the per-image differences shifted by the margin",
}
NONINFERIORITY_FORMATS = {"mean_difference": "{:.3g}", "bound": "{:.3g}", "p_value": "{:.4g}"}
IDENTITY_FORMATS = {"mean_similarity": "{:.3f}", "sd_similarity": "{:.3f}"}
NUMERIC_CLASS = ' class="num"'
# a text cell this long gets class "text": the report gives it a readable width instead of the one-word column a
# table wider than its box is squeezed to (the reasons of editing_informative)
LONG_TEXT, TEXT_CLASS = 40, ' class="text"'
FloatFormat = str | Mapping[str, str] | Callable[[float], str]


def _as_long_frame(frames, *, required: Sequence[str], what: str) -> pd.DataFrame:
    frame = frames if isinstance(frames, pd.DataFrame) else pd.concat(list(frames), ignore_index=True)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise KeyError(f"{what}: columns {missing} missing; got {list(frame.columns)}")
    return frame


def table1(metrics, *, spaces_order: Sequence[str] = PAPER_SPACE_ORDER) -> pd.DataFrame:
    """Table 1: per space n (images), mean and sample sd (ddof=1) of MSE, SSIM and the perceptual distance, and the
    budget: mean and largest image_steps per image (NaN where the metrics hold no budget).

    `metrics` is a long frame or an iterable of per-space frames. A metric that is NaN for every image of
    a space was not computed and stays NaN; one missing for only some images is an error (an upstream
    failure that must not shrink n silently), as is an image listed twice for a space.
    """
    frame = _as_long_frame(metrics, required=("space", "image_id", *RECONSTRUCTION_METRICS), what="table1")
    repeated = frame.duplicated(["space", "image_id"])
    if repeated.any():
        first = frame.loc[repeated, ["space", "image_id"]].iloc[0].tolist()
        raise ValueError(f"table1: image listed twice for a space: {first}")
    rows = []
    for space in order_spaces(frame.space, spaces_order=spaces_order):
        subset = frame[frame.space == space]
        row = dict(space=space, n=len(subset))
        for metric in RECONSTRUCTION_METRICS:
            values = subset[metric].astype(float)
            if values.isna().any() and not values.isna().all():
                example = subset.image_id[values.isna()].iloc[0]
                raise ValueError(
                    f"table1: {metric} is missing for {int(values.isna().sum())} of {len(values)} images "
                    f"of space {space!r} (e.g. {example!r}); recompute its metrics"
                )
            row[f"{metric}_mean"] = values.mean()
            row[f"{metric}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
        budget = subset["image_steps"].astype(float) if "image_steps" in subset else pd.Series([np.nan])
        row.update(steps_mean=budget.mean(), steps_max=budget.max())
        rows.append(row)
    columns = [f"{m}_{s}" for m in RECONSTRUCTION_METRICS for s in ("mean", "sd")]
    return pd.DataFrame(rows, columns=["space", "n", *columns, "steps_mean", "steps_max"])


def table1_display(
    table: pd.DataFrame,
    *,
    float_format: str = "{:.5f}",
    perceptual_label: str = "perceptual",
    na_rep: str = "not computed",
) -> pd.DataFrame:
    """Table 1 as strings, one column per metric holding 'mean ± sd' (the paper's layout plus the sd), and the budget
    'mean (max)' steps per image."""
    labels = dict(mse="MSE", ssim="SSIM", perceptual=perceptual_label)
    out = pd.DataFrame(dict(space=table.space, n=table.n.astype(int)))
    for metric, label in labels.items():
        mean, sd = table[f"{metric}_mean"], table[f"{metric}_sd"]
        out[label] = [
            na_rep if pd.isna(m) else float_format.format(m) + ("" if pd.isna(s) else f" ± {float_format.format(s)}")
            for m, s in zip(mean, sd)
        ]
    if "steps_mean" in table and table.steps_mean.notna().any():  # results from before budgets were recorded: none
        out["steps per image, mean (max)"] = [
            na_rep if pd.isna(m) else f"{m:.0f} ({x:.0f})" for m, x in zip(table.steps_mean, table.steps_max)
        ]
    return out


def tuning_table(metrics, *, pivots: Mapping[str, str]) -> pd.DataFrame:
    """The paper's Fig. 9 as a table: per image, MSE and perceptual distance of each method on a pivot (PTI,
    SAM and their Z+ variants), of its pivot space alone (W, W+, Z+; each once, before its first method) and of
    the pivot space run for the method's whole budget where the metrics hold that row, with each one's budget
    (steps: its generator passes, a method's include its pivot's), then their means. pivots: method -> pivot space;
    a pivot that was not inverted in the run is left out."""
    frame = _as_long_frame(metrics, required=("space", "image_id", "mse", "perceptual"), what="tuning_table")
    present = set(frame.space)
    columns = [
        name
        for method, pivot in pivots.items()
        for name in (pivot, budget_matched_name(spaces_get(method)), method)
        if name in present
    ]
    shown = [("mse", "MSE"), ("perceptual", "perceptual")] + ([("image_steps", "steps")] * ("image_steps" in frame))
    values = [metric for metric, _ in shown]
    wide = frame[frame.space.isin(columns)].pivot(index="image_id", columns="space", values=values)
    out = pd.DataFrame(
        {f"{space} {label}": wide[metric][space] for space in dict.fromkeys(columns) for metric, label in shown}
    )
    out.loc["mean"] = out.mean()
    return out.rename_axis("image_id").reset_index()


def identity_table(identity, *, spaces_order: Sequence[str] = PAPER_SPACE_ORDER) -> pd.DataFrame:
    """Mean identity similarity per space x direction family, plus one row per space over all families
    (family 'all': the paper's 0.373 for F/Z+ against 0.327 for F/W+ averages every image, direction and
    step size). Columns: space, family, n (edits), n_images, mean_similarity, sd_similarity,
    n_missing (NaN similarities: no face embedding), targets_undetected (distinct images whose target
    face was not detected), edited_undetected (edits whose face was not detected)."""
    frame = _as_long_frame(
        identity,
        required=(
            "space",
            "family",
            "direction",
            "image_id",
            "alpha",
            "similarity",
            "target_detected",
            "edited_detected",
        ),
        what="identity_table",
    )
    rows = []
    for space in order_spaces(frame.space, spaces_order=spaces_order):
        subset = frame[frame.space == space]
        groups = [(family, subset[subset.family == family]) for family in sorted(subset.family.unique())]
        for family, group in groups + [(ALL_FAMILIES, subset)]:
            similarity = group.similarity.astype(float)
            target_detected = group.target_detected.astype(bool)
            rows.append(
                dict(
                    space=space,
                    family=family,
                    n=len(group),
                    n_images=group.image_id.nunique(),
                    mean_similarity=similarity.mean(),
                    sd_similarity=similarity.std(ddof=1),
                    n_missing=int(similarity.isna().sum()),
                    targets_undetected=group.image_id[~target_detected].nunique(),
                    edited_undetected=int((~group.edited_detected.astype(bool)).sum()),
                )
            )
    return pd.DataFrame(rows)


def edit_strength_table(directions: pd.DataFrame) -> pd.DataFrame:
    """How hard one unit of alpha edits in each domain, per direction: the measured image change per unit
    (column image_distance_per_unit of tables/directions, fzplus.edits.calibration) of each Z direction beside
    the W direction of the same family and name, and their ratio z_over_w. A ratio near 1 means the Z-type and
    W-type spaces were edited equally hard at the same alpha along that direction; a family mean would hide one
    direction that barely edits in W. A direction found in one domain only has NaN in the other."""
    frame = _as_long_frame(
        directions, required=("method", "domain", "direction", "image_distance_per_unit"), what="edit_strength_table"
    )
    frame = frame.assign(family=frame.method.str.replace("-released", "", regex=False))
    keys = ["family", "direction"]
    repeated = frame.duplicated([*keys, "domain"])
    if repeated.any():
        first = frame.loc[repeated, [*keys, "domain"]].iloc[0].tolist()
        raise ValueError(f"edit_strength_table: a direction is listed twice in one domain: {first}")
    by_domain = {
        domain: frame[frame.domain == domain][[*keys, "image_distance_per_unit"]].rename(
            columns={"image_distance_per_unit": f"{domain.lower()}_image_distance_per_unit"}
        )
        for domain in ("Z", "W")
    }
    table = by_domain["Z"].merge(by_domain["W"], on=keys, how="outer", sort=False).reset_index(drop=True)
    table["z_over_w"] = table.z_image_distance_per_unit / table.w_image_distance_per_unit
    return table


def noninferiority_display(table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """(caption naming the test(s), margin(s) and confidence, display frame) for a non_inferiority_table."""
    bound = "bound" if "bound" in table.columns else "confidence_bound"
    columns = ["candidate", "reference", "metric", "n", "mean_difference", bound, "p_value", "non_inferior"]
    missing = [c for c in columns + ["test", "margin"] if c not in table.columns]
    if missing:
        raise KeyError(f"non-inferiority table: columns {missing} missing; got {list(table.columns)}")
    if "bound_side" in table.columns:  # upper bound where lower is better (MSE), lower bound otherwise
        columns.insert(columns.index(bound) + 1, "bound_side")
    parts = []
    for (test, margin), group in table.groupby(["test", "margin"], sort=False):
        confidence = f", confidence {group.confidence.iloc[0]:g}" if "confidence" in group.columns else ""
        parts.append(f"{TEST_DESCRIPTIONS.get(test, test)} ({test}), margin {margin:g}{confidence}")
    caption = "Test: " + "; ".join(parts) + ". mean_difference and bound are candidate - reference."
    return caption, table[columns].rename(columns={bound: "bound"})


def noninferiority_markdown(table: pd.DataFrame) -> str:
    """The non-inferiority table as markdown, preceded by the caption naming the test and margin."""
    caption, display = noninferiority_display(table)
    return caption + "\n\n" + to_markdown(display, float_format=NONINFERIORITY_FORMATS)


def format_cells(frame: pd.DataFrame, *, float_format: FloatFormat = "{:.5f}", na_rep: str = "n/a") -> list[list[str]]:
    """Cell strings of `frame` row by row: floats through `float_format` (a format string, a mapping
    column -> format string with "{:.5f}" for the rest, or a callable), bools as yes/no, NaN as na_rep."""

    def formatter(column: str) -> Callable[[float], str]:
        spec = float_format.get(column, "{:.5f}") if isinstance(float_format, Mapping) else float_format
        return spec if callable(spec) else spec.format

    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record):
            if isinstance(value, (bool, np.bool_)):
                cells.append("yes" if value else "no")
            elif value is None or (isinstance(value, float) and np.isnan(value)):
                cells.append(na_rep)
            elif isinstance(value, (float, np.floating)):
                cells.append(formatter(column)(float(value)))
            else:
                cells.append(str(value))
        rows.append(cells)
    return rows


def _is_numeric(frame: pd.DataFrame, column: str) -> bool:
    return pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])


def to_markdown(frame: pd.DataFrame, *, float_format: FloatFormat = "{:.5f}", na_rep: str = "n/a") -> str:
    """A GitHub markdown table: header row, alignment row (numbers right-aligned), one row per frame row."""

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = [escape(str(c)) for c in frame.columns]
    rows = [[escape(c) for c in row] for row in format_cells(frame, float_format=float_format, na_rep=na_rep)]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    numeric = [_is_numeric(frame, c) for c in frame.columns]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows]) + "\n"


def to_html(frame: pd.DataFrame, *, float_format: FloatFormat = "{:.5f}", na_rep: str = "n/a") -> str:
    """The same cells as `to_markdown`, as an escaped HTML <table> (numbers right-aligned via class 'num', text
    longer than LONG_TEXT marked with class 'text')."""
    numeric = [_is_numeric(frame, c) for c in frame.columns]

    def cell(tag: str, text: str, num: bool) -> str:
        css = NUMERIC_CLASS if num else TEXT_CLASS if len(text) > LONG_TEXT else ""
        return f"<{tag}{css}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", str(c), n) for c, n in zip(frame.columns, numeric))
    body = "".join(
        "<tr>" + "".join(cell("td", text, n) for text, n in zip(row, numeric)) + "</tr>"
        for row in format_cells(frame, float_format=float_format, na_rep=na_rep)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (readers see the old file or the whole new one), creating its folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_table(frame: pd.DataFrame, csv_path: str | os.PathLike, *, markdown: str) -> None:
    """Save a table as CSV (full precision, for auditing) and its markdown beside it (same stem, .md)."""
    csv_path = pathlib.Path(csv_path)
    if csv_path.suffix != ".csv":
        raise ValueError(f"write_table: {csv_path} should end in .csv")
    write_text(csv_path, frame.to_csv(index=False))
    write_text(csv_path.with_suffix(".md"), markdown)


def collect_csvs(results_dir: str | os.PathLike, pattern: str) -> pd.DataFrame:
    """Concatenate the CSVs matching `pattern` under results_dir (e.g. 'inversion/*/metrics.csv'), adding
    `space_slug` = the name of each file's folder. An empty frame when none exist (a partial run)."""
    paths = sorted(pathlib.Path(results_dir).glob(pattern))
    frames = [pd.read_csv(p, dtype={"image_id": str}).assign(space_slug=p.parent.name) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


__all__ = [
    "PAPER_SPACE_ORDER",
    "tuning_table",
    "RECONSTRUCTION_METRICS",
    "ALL_FAMILIES",
    "TEST_DESCRIPTIONS",
    "order_spaces",
    "table1",
    "table1_display",
    "identity_table",
    "edit_strength_table",
    "noninferiority_display",
    "noninferiority_markdown",
    "NONINFERIORITY_FORMATS",
    "IDENTITY_FORMATS",
    "format_cells",
    "to_markdown",
    "to_html",
    "write_text",
    "write_table",
    "collect_csvs",
]
