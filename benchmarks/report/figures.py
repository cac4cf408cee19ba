"""Figures of the benchmark: identity similarity against step size (Fig. 6), reconstruction grids
(Fig. 2), editing grids (Figs. 3, 4, 7) and inversion loss curves.

Every function builds a matplotlib `Figure` with the object API and the Agg canvas (no pyplot state, no
display needed, whatever the session's backend), writes it atomically as PNG at `dpi` (default 150), and
returns the Figure for inspection. Sizes are fixed in inches (no tight bounding box), so a PNG is exactly
round(width_inches * dpi) x round(height_inches * dpi) pixels, and the same data give the same bytes.
Images are float [N, 3, R, R] in [-1, 1] or uint8 (see benchmarks.metrics.reconstruction.to_uint8).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.metrics.reconstruction import to_uint8
from benchmarks.report.tables import PAPER_SPACE_ORDER, order_spaces
from fzplus.io import atomic_write

DPI = 150
LIGHT_LINEWIDTH, LIGHT_ALPHA = 0.6, 0.3  # one line per (target x direction), Fig. 6
DEEP_LINEWIDTH = 2.5  # the mean of a space, Fig. 6
GRID_LABEL_INCHES = 1.0  # row-label column left of an image grid, at least (wider for longer labels)
GRID_HEADER_INCHES = 0.3  # column-label row above it
GRID_CAPTION_INCHES = 0.3  # metric captions under each image (when there are any)
GRID_GAP_INCHES = 0.04  # white space between neighbouring images
GRID_CAPTION_FONTSIZE, GRID_LABEL_FONTSIZE = 5.5, 8
PAPER_COLOURS = {  # fixed per space so that every figure agrees; the method and its rival stand out
    "F/Z+": "#d62728",
    "F/W+(P_N)": "#1f77b4",
    "F/W+": "#2ca02c",
    "F/Z": "#ff7f0e",
    "F/W": "#9467bd",
    "F/S": "#8c564b",
    "Z": "#7f7f7f",
    "Z+": "#bcbd22",
    "W": "#17becf",
    "W+": "#e377c2",
    "W+(P_N)": "#393b79",
    "S": "#637939",
    # the methods built on a space: away from the hues above (Dark2, the fallback, repeats several of them)
    "IDInvert": "#000000",
    "PTI": "#bd9e39",
    "PTI w/ Z+": "#843c39",
    "SAM": "#7b4173",
    "SAM w/ Z+": "#00a087",
}


def space_colours(spaces: Sequence[str]) -> dict[str, str]:
    """A colour per space: the fixed PAPER_COLOURS, then Dark2 colours in order for other spaces."""
    extra = iter(mcolors.to_hex(c) for c in matplotlib.colormaps["Dark2"].colors * len(spaces))
    return {space: PAPER_COLOURS[space] if space in PAPER_COLOURS else next(extra) for space in spaces}


def _new_figure(width: float, height: float, **kwargs) -> Figure:
    figure = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | os.PathLike, *, dpi: int = DPI) -> Figure:
    """Write `figure` as PNG atomically (creating the folder); no software tag, so bytes depend on data only."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=dpi, metadata={"Software": None}))
    return figure


BAND_COLOURS = {"floor": "#d62728", "ceiling": "#2ca02c"}


def draw_bands(ax, bands: Mapping[str, tuple[float, float]] | None) -> None:
    """Shade a metric's floor and ceiling: the range of its reference pairs' medians (benchmarks.metrics.sanity)."""
    for kind, (low, high) in (bands or {}).items():
        if np.isfinite(low) and np.isfinite(high):
            pad = 0.002 * max(abs(low), abs(high), 1e-12)  # a single reference still shows as a thin band
            ax.axhspan(
                low - pad, high + pad, color=BAND_COLOURS[kind], alpha=0.15, zorder=0, label=f"{kind} (reference pairs)"
            )


def identity_vs_step_plot(
    identity: pd.DataFrame,
    *,
    spaces: Sequence[str],
    path: str | os.PathLike,
    families: Sequence[str] | None = None,
    panel_inches: tuple[float, float] = (4.5, 3.5),
    bands: Mapping[str, tuple[float, float]] | Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    dpi: int = DPI,
) -> Figure:
    """Fig. 6: identity similarity (y) against step size alpha (x), one panel per direction family, and one row
    of panels per target set when the frame has a `target_set` column (the real targets, the in-domain ones).

    Per space (one colour): a light thin line for each (target image x direction) and a deep thick line
    for the mean over them at each alpha (NaN similarities, counted in the identity table, are left out
    of the mean). `identity` is the long frame of edits/<slug>/identity.csv; `families` defaults to all.
    bands: {"floor": (low, high), "ceiling": (low, high)}, the metric's reference range (draw_bands); with
    target sets, {target set: such bands}.
    """
    required = ["space", "family", "direction", "image_id", "alpha", "similarity"]
    missing = [c for c in required if c not in identity.columns]
    if missing:
        raise KeyError(f"identity_vs_step_plot: columns {missing} missing; got {list(identity.columns)}")
    absent = [s for s in spaces if s not in set(identity.space)]
    if absent:
        raise ValueError(
            f"identity_vs_step_plot: no identity rows for spaces {absent}; present: {sorted(set(identity.space))}"
        )
    families = sorted(identity.family.unique()) if families is None else list(families)
    if not families or any(f not in set(identity.family) for f in families):
        raise ValueError(
            f"identity_vs_step_plot: families {families} not all in the frame ({sorted(set(identity.family))})"
        )
    if "target_set" in identity.columns:
        sets = list(dict.fromkeys(identity.target_set))
        set_bands = dict(bands or {})
    else:
        sets, set_bands = [None], {None: bands}
    colours = space_colours(spaces)
    figure = _new_figure(panel_inches[0] * len(families), panel_inches[1] * len(sets), layout="constrained")
    grid = figure.subplots(len(sets), len(families), squeeze=False, sharey=True)
    for axes, target_set in zip(grid, sets):
        frame = identity if target_set is None else identity[identity.target_set == target_set]
        for ax, family in zip(axes, families):
            for space in spaces:
                rows = frame[(frame.space == space) & (frame.family == family)]
                for _, line in rows.sort_values("alpha").groupby(["image_id", "direction"], sort=True):
                    ax.plot(
                        line.alpha,
                        line.similarity,
                        color=colours[space],
                        linewidth=LIGHT_LINEWIDTH,
                        alpha=LIGHT_ALPHA,
                        zorder=1,
                    )
                if len(rows):
                    mean = rows.groupby("alpha").similarity.mean()
                    ax.plot(
                        mean.index,
                        mean.to_numpy(),
                        color=colours[space],
                        linewidth=DEEP_LINEWIDTH,
                        zorder=3,
                        label=space,
                    )
            draw_bands(ax, set_bands.get(target_set))
            ax.set(title=family if target_set is None else f"{family}: {target_set} targets", xlabel="step size α")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("identity similarity")
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=7)  # beside the panels, never over the curves
    return save_png(figure, path, dpi=dpi)


def _image_grid(
    cells: Sequence[Sequence[np.ndarray]],
    *,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    captions: Sequence[Sequence[str]] | None,
    cell_inches: float,
) -> Figure:
    """Images cells[row][col] (uint8 HWC, one size per row) in a fixed-geometry grid: width = label column +
    columns x cell, height = header + rows x (cell + caption band, when captions are given). Each row is
    drawn as one image with white gaps between its cells: one axes per cell made a 12 x 11 grid cost 2 s."""
    n_rows, n_cols = len(cells), len(column_labels)
    # wide enough for the longest row label ("005735 mouth_open" was cut at 1 in): ~0.6 em per character
    label_inches = max(GRID_LABEL_INCHES, 0.15 + 0.6 * GRID_LABEL_FONTSIZE / 72 * max(map(len, row_labels), default=0))
    caption_inches = GRID_CAPTION_INCHES if captions is not None else 0.0
    width = label_inches + n_cols * cell_inches
    height = GRID_HEADER_INCHES + n_rows * (cell_inches + caption_inches)
    figure = _new_figure(width, height)
    for c, label in enumerate(column_labels):
        figure.text(
            (label_inches + (c + 0.5) * cell_inches) / width,
            1 - GRID_HEADER_INCHES / 2 / height,
            label,
            ha="center",
            va="center",
            fontsize=GRID_LABEL_FONTSIZE,
        )
    for r, (label, row) in enumerate(zip(row_labels, cells)):
        top = height - GRID_HEADER_INCHES - r * (cell_inches + caption_inches)
        figure.text(
            (label_inches - 0.08) / width,
            (top - cell_inches / 2) / height,
            label,
            ha="right",
            va="center",
            fontsize=GRID_LABEL_FONTSIZE,
        )
        ax = figure.add_axes(
            (
                (label_inches + GRID_GAP_INCHES / 2) / width,
                (top - cell_inches + GRID_GAP_INCHES / 2) / height,
                (n_cols * cell_inches - GRID_GAP_INCHES) / width,
                (cell_inches - GRID_GAP_INCHES) / height,
            )
        )
        ax.imshow(_row_strip(row, label=label, cell_inches=cell_inches), aspect="auto")
        ax.set_axis_off()
        for c in range(n_cols if captions is not None else 0):
            if captions[r][c]:
                figure.text(
                    (label_inches + (c + 0.5) * cell_inches) / width,
                    (top - cell_inches - 0.02) / height,
                    captions[r][c],
                    ha="center",
                    va="top",
                    fontsize=GRID_CAPTION_FONTSIZE,
                    linespacing=1.1,
                )
    return figure


def _row_strip(images: Sequence[np.ndarray], *, label: str, cell_inches: float) -> np.ndarray:
    """uint8 HWC images of one size, side by side, separated by white columns as wide as the grid's gap."""
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"image grid: row {label!r} mixes image sizes {sorted(shapes)}; give one size per row")
    h = images[0].shape[0]
    gap = np.full(
        (h, max(1, round(h * GRID_GAP_INCHES / (cell_inches - GRID_GAP_INCHES))), images[0].shape[2]), 255, np.uint8
    )
    return np.concatenate([part for image in images for part in (gap, image)][1:], axis=1)


def reconstruction_grid(
    targets,
    recons_by_space: Mapping[str, object],
    *,
    image_ids: Sequence[str],
    spaces: Sequence[str],
    path: str | os.PathLike,
    per_image_metrics: pd.DataFrame | None = None,
    perceptual_label: str = "LPIPS",
    cell_inches: float = 1.2,
    dpi: int = DPI,
) -> Figure:
    """Fig. 2: rows = target then each space, columns = images (targets[i] is image_ids[i], and so is
    recons_by_space[space][i]). With `per_image_metrics` (space, image_id, mse, perceptual) each
    reconstruction shows its MSE and perceptual distance underneath."""
    columns = [to_uint8(targets, name="targets")]
    for space in spaces:
        if space not in recons_by_space:
            raise KeyError(
                f"reconstruction_grid: no reconstructions for space {space!r}; have {sorted(recons_by_space)}"
            )
        columns.append(to_uint8(recons_by_space[space], name=f"reconstructions of {space}"))
    if any(len(images) != len(image_ids) for images in columns):
        raise ValueError(
            f"reconstruction_grid: {len(image_ids)} image_ids but image counts "
            f"{[len(images) for images in columns]} (target row first)"
        )
    captions = None
    if per_image_metrics is not None:
        values = per_image_metrics.set_index(["space", "image_id"])
        captions = [[""] * len(image_ids)] + [
            [_metric_caption(values, space, i, perceptual_label) for i in image_ids] for space in spaces
        ]
    return save_png(
        _image_grid(
            columns,
            row_labels=["target", *spaces],
            column_labels=list(image_ids),
            captions=captions,
            cell_inches=cell_inches,
        ),
        path,
        dpi=dpi,
    )


def _metric_caption(values: pd.DataFrame, space: str, image_id: str, perceptual_label: str) -> str:
    if (space, image_id) not in values.index:
        return "no metrics"
    row = values.loc[(space, image_id)]
    perceptual = "n/a" if pd.isna(row.perceptual) else f"{row.perceptual:.4f}"
    return f"MSE {row.mse:.4f}\n{perceptual_label} {perceptual}"


def editing_grid(
    rows: Sequence[tuple[str, object]],
    *,
    column_labels: Sequence[str],
    path: str | os.PathLike,
    cell_inches: float = 1.2,
    dpi: int = DPI,
) -> Figure:
    """Figs. 3, 4, 7: one labelled row per (label, images [K, 3, R, R] or uint8 [K, R, R, 3]), e.g. a space
    over K step sizes, or target / inversion / edits; K = len(column_labels) for every row."""
    cells = []
    for label, images in rows:
        images = to_uint8(images, name=f"row {label!r}")
        if len(images) != len(column_labels):
            raise ValueError(
                f"editing_grid: row {label!r} has {len(images)} images for {len(column_labels)} column labels"
            )
        cells.append(list(images))
    return save_png(
        _image_grid(
            cells,
            row_labels=[label for label, _ in rows],
            column_labels=list(column_labels),
            captions=None,
            cell_inches=cell_inches,
        ),
        path,
        dpi=dpi,
    )


def loss_curves(
    losses: pd.DataFrame,
    *,
    path: str | os.PathLike,
    columns: Sequence[str] = ("total", "mse", "perceptual"),
    space_column: str = "space",
    spaces_order: Sequence[str] = PAPER_SPACE_ORDER,
    panel_inches: tuple[float, float] = (4.0, 3.2),
    dpi: int = DPI,
) -> Figure:
    """Mean inversion loss per step and space (log y unless a column has no positive value), one panel per
    loss column. `losses` is the long frame of inversion/<slug>/losses.csv with a space column added
    (tables.collect_csvs adds `space_slug`; pass space_column="space_slug" to use it)."""
    missing = [c for c in (space_column, "image_id", "step", *columns) if c not in losses.columns]
    if missing:
        raise KeyError(f"loss_curves: columns {missing} missing; got {list(losses.columns)}")
    spaces = order_spaces(losses[space_column], spaces_order=spaces_order)
    colours = space_colours(spaces)
    figure = _new_figure(panel_inches[0] * len(columns), panel_inches[1], layout="constrained")
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns):
        for space in spaces:
            mean = losses[losses[space_column] == space].groupby("step")[column].mean()
            ax.plot(mean.index, mean.to_numpy(), color=colours[space], linewidth=1.2, label=space)
        if (losses[column] > 0).any():
            ax.set_yscale("log", nonpositive="mask")
            ax.set(title=column, xlabel="step")
        else:  # e.g. a regulariser that is 0 for every space shown: a log axis would be empty
            ax.set(title=f"{column} (linear: no positive values)", xlabel="step")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("mean loss over images")
    axes[0].legend(fontsize=7)
    return save_png(figure, path, dpi=dpi)


__all__ = [
    "DPI",
    "LIGHT_LINEWIDTH",
    "DEEP_LINEWIDTH",
    "PAPER_COLOURS",
    "space_colours",
    "save_png",
    "identity_vs_step_plot",
    "reconstruction_grid",
    "editing_grid",
    "loss_curves",
    "latent_map_grid",
    "SPACE_FIGURES",
]


LATENT_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#1f77b4")  # finest residual ... pivot (last)


def latent_map_grid(
    targets,
    recons,
    latent_maps,
    *,
    candidates: Sequence[str],
    image_ids: Sequence[str],
    path: str | os.PathLike,
    cell_inches: float = 1.2,
    dpi: int = DPI,
) -> Figure:
    """SAM's chosen latents: rows = target, reconstruction, the target tinted by the latent each pixel chose.
    latent_maps [N, R, R] index `candidates` (finest residual first, the pivot last, which takes the last
    colour); the map's captions give each latent's share of the image."""
    maps = np.asarray(latent_maps).astype(np.int64)
    if maps.max(initial=0) >= len(candidates):
        raise ValueError(
            f"latent_map_grid: map values up to {maps.max()} for {len(candidates)} candidates {list(candidates)}"
        )
    palette = [LATENT_COLOURS[k] for k in range(len(candidates) - 1)] + [LATENT_COLOURS[-1]]
    rgb = (np.array([mcolors.to_rgb(c) for c in palette]) * 255)[maps]
    base = to_uint8(targets, name="targets").astype(np.float64)
    tinted = (0.35 * base + 0.65 * rgb).round().astype(np.uint8)
    captions = [
        [""] * len(image_ids),
        [""] * len(image_ids),
        [
            "  ".join(f"{name} {np.mean(m == k):.0%}" for k, name in enumerate(candidates) if (m == k).any())
            for m in maps
        ],
    ]
    legend = "chosen: " + ", ".join(f"{name} {colour}" for name, colour in zip(candidates, palette))
    figure = _image_grid(
        [list(to_uint8(targets, name="targets")), list(to_uint8(recons, name="reconstructions")), list(tinted)],
        row_labels=["target", "reconstruction", "chosen latent"],
        column_labels=list(image_ids),
        captions=captions,
        cell_inches=cell_inches,
    )
    figure.text(0.01, 0.005, legend, fontsize=GRID_CAPTION_FONTSIZE, ha="left", va="bottom")
    return save_png(figure, path, dpi=dpi)


def draw_latent_maps(
    space,
    codes: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    target_images,
    recons,
    image_ids: Sequence[str],
    path: str | os.PathLike,
    dpi: int = DPI,
) -> Figure:
    """The 'latent_maps' figure of a plugin that declares it (spaces.base.FIGURE_KINDS): codes (image id -> that
    image's codes, as codes.pt holds them) carry each image's `latent_map` and `residual_sizes`."""
    maps = torch.cat([codes[i]["latent_map"] for i in image_ids])
    candidates = space.candidate_names(codes[image_ids[0]]["residual_sizes"][0].tolist())
    return latent_map_grid(target_images, recons, maps, candidates=candidates, image_ids=image_ids, path=path, dpi=dpi)


# the figures a plugin may declare (spaces.base.FIGURE_KINDS), by name:
# (space, codes, *, target_images, recons, image_ids, path, dpi)
SPACE_FIGURES = {"latent_maps": draw_latent_maps}
