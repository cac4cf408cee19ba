"""Fig. 6-style curves of every editing metric, each drawn over its own floor and ceiling (benchmarks.metrics.sanity),
and identity against the attribute change the edits achieved (benchmarks.statistics.editing)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmarks.report.figures import DEEP_LINEWIDTH, DPI, _new_figure, draw_bands, save_png, space_colours

HIGHLIGHT_WIDTH, OTHER_WIDTH = DEEP_LINEWIDTH, 0.9


def reference_bands(baselines: pd.DataFrame, metric: str) -> dict[str, tuple[float, float]]:
    """{kind: (lowest, highest) median over the metric's reference pairs of that kind}."""
    rows = baselines[(baselines.metric == metric) & baselines.kind.isin(["floor", "ceiling"])]
    medians = rows.groupby(["kind", "reference"])["value"].median()
    return {kind: (float(values.min()), float(values.max())) for kind, values in medians.groupby(level=0)}


def _curves(ax, frame: pd.DataFrame, *, x: str, y: str, spaces: Sequence[str], highlight: Sequence[str]) -> None:
    colours = space_colours(spaces)
    for space in spaces:
        mean = frame[frame.space == space].groupby(x)[y].mean()
        if len(mean):
            ax.plot(
                mean.index,
                mean.to_numpy(),
                color=colours[space],
                marker="o",
                markersize=2.5,
                label=space,
                linewidth=HIGHLIGHT_WIDTH if space in highlight else OTHER_WIDTH,
                zorder=3 if space in highlight else 2,
            )


def editing_metrics_plot(
    *,
    identity: pd.DataFrame,
    fidelity: pd.DataFrame,
    kids: pd.DataFrame,
    matched: pd.DataFrame,
    baselines: pd.DataFrame,
    spaces: Sequence[str],
    highlight: Sequence[str] = (),
    path: str | os.PathLike,
    panel_inches: tuple[float, float] = (4.2, 3.4),
    dpi: int = DPI,
) -> Figure:
    """Four panels, mean over images and directions per space: identity (undetected faces at the floor) and
    ground-truth fidelity (perceptual) against alpha, KID against |alpha|, and identity at the matched
    attribute change per attribute direction. identity: rows with a `scored` similarity column;
    baselines: reference-pair values (metric, reference, kind, value), KID rows included."""
    figure = _new_figure(panel_inches[0] * 4, panel_inches[1], layout="constrained")
    axes = figure.subplots(1, 4, squeeze=True)
    panels = [
        (axes[0], identity, "alpha", "scored", "identity", "identity similarity", "step size α"),
        (axes[1], fidelity, "alpha", "perceptual", "fidelity_perceptual", "distance to the true edit", "step size α"),
        (axes[2], kids, "abs_alpha", "kid", "realism_kid", "KID to fresh samples", "|α|"),
    ]
    for ax, frame, x, y, metric, ylabel, xlabel in panels:
        if frame.empty:
            ax.text(0.5, 0.5, "not measured in this profile", ha="center", va="center", transform=ax.transAxes)
        else:
            _curves(ax, frame, x=x, y=y, spaces=spaces, highlight=highlight)
            draw_bands(ax, reference_bands(baselines, metric))
        ax.set(xlabel=xlabel, ylabel=ylabel, title=metric)
        ax.grid(alpha=0.3)
    ax = axes[3]
    if matched.empty:
        ax.text(0.5, 0.5, "no landmark attribute edits", ha="center", va="center", transform=ax.transAxes)
    else:
        directions = sorted(matched.direction.unique())
        colours = space_colours(spaces)
        width = 0.8 / max(len(spaces), 1)
        for k, space in enumerate(spaces):
            values = matched[matched.space == space].groupby("direction")["similarity"].mean().reindex(directions)
            ax.bar(
                np.arange(len(directions)) + k * width,
                values.to_numpy(),
                width=width,
                color=colours[space],
                label=space,
            )
        ax.set_xticks(np.arange(len(directions)) + 0.4 - width / 2, directions)
        draw_bands(ax, reference_bands(baselines, "identity"))
        values = matched.similarity.dropna()
        if len(values):
            ax.set_ylim(
                min(values.min(), reference_bands(baselines, "identity").get("floor", (values.min(),))[0]) - 0.01,
                max(values.max(), 1e-9) + 0.02,
            )
    ax.set(title="identity at matched attribute change", ylabel="identity similarity")
    ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=6, ncol=2)
    return save_png(figure, path, dpi=dpi)


def identity_vs_change_plot(
    changes: pd.DataFrame,
    *,
    levels: Mapping[str, float],
    spaces: Sequence[str],
    path: str | os.PathLike,
    baselines: pd.DataFrame | None = None,
    panel_inches: tuple[float, float] = (4.2, 3.4),
    dpi: int = DPI,
) -> Figure:
    """Identity (undetected faces at the floor) against the achieved attribute change, one panel per attribute
    direction, one point per edit; the dashed line is the matched level."""
    directions = sorted(changes.direction.unique())
    figure = _new_figure(panel_inches[0] * max(len(directions), 1), panel_inches[1], layout="constrained")
    axes = figure.subplots(1, max(len(directions), 1), squeeze=False)[0]
    colours = space_colours(spaces)
    for ax, direction in zip(axes, directions):
        rows = changes[(changes.direction == direction) & (changes.alpha != 0)]
        for space in spaces:
            mine = rows[rows.space == space]
            ax.scatter(mine.change, mine.scored, s=4, color=colours[space], alpha=0.6, label=space)
        if direction in levels:
            ax.axvline(levels[direction], color="black", linestyle="--", linewidth=0.8)
        if baselines is not None:
            draw_bands(ax, reference_bands(baselines, "identity"))
        ax.set(title=direction, xlabel="achieved attribute change (landmark score)", ylabel="identity similarity")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2, markerscale=2)
    return save_png(figure, path, dpi=dpi)
