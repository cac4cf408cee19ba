"""Figures: each writes a PNG of the stated pixel size; Fig. 6 has one deep line per space and one light line
per (target x direction); grids place every image and caption; output is deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_hex
from PIL import Image

from benchmarks.report.figures import (
    DEEP_LINEWIDTH,
    GRID_CAPTION_INCHES,
    GRID_HEADER_INCHES,
    GRID_LABEL_INCHES,
    LIGHT_LINEWIDTH,
    PAPER_COLOURS,
    editing_grid,
    identity_vs_step_plot,
    loss_curves,
    reconstruction_grid,
    space_colours,
)

SPACES = ["F/W+(P_N)", "F/Z+"]


def png_size(path) -> tuple[int, int]:
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        return image.size


def planted_identity(*, images=("a", "b", "c", "d"), directions=("d1", "d2", "d3")) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        dict(
            space=space,
            family=family,
            direction=direction,
            image_id=image_id,
            alpha=alpha,
            similarity=1 - 0.1 * abs(alpha) * (1 + k) + rng.normal(0, 0.01),
        )
        for k, space in enumerate(SPACES)
        for family in ("ganspace", "interfacegan")
        for direction in directions
        for image_id in images
        for alpha in np.linspace(-2, 2, 5)
    ]
    return pd.DataFrame(rows)


def test_identity_plot_has_one_deep_line_per_space(tmp_path):
    identity = planted_identity()
    path = tmp_path / "fig6.png"
    figure = identity_vs_step_plot(identity, spaces=SPACES, path=path, panel_inches=(4.0, 3.0), dpi=50)
    assert png_size(path) == (2 * 4 * 50, 3 * 50)
    assert [ax.get_title() for ax in figure.axes] == ["ganspace", "interfacegan"]
    for ax in figure.axes:
        deep = [line for line in ax.lines if line.get_linewidth() == DEEP_LINEWIDTH]
        light = [line for line in ax.lines if line.get_linewidth() == LIGHT_LINEWIDTH]
        assert [line.get_label() for line in deep] == SPACES
        assert len(light) == len(SPACES) * 4 * 3 and len(ax.lines) == len(deep) + len(light)
        for space, line in zip(SPACES, deep):
            assert to_hex(line.get_color()) == PAPER_COLOURS[space]
            assert sum(to_hex(curve.get_color()) == PAPER_COLOURS[space] for curve in light) == 12
            rows = identity[(identity.space == space) & (identity.family == ax.get_title())]
            np.testing.assert_allclose(line.get_ydata(), rows.groupby("alpha").similarity.mean().to_numpy())
    one = identity_vs_step_plot(identity, spaces=["F/Z+"], families=["ganspace"], path=tmp_path / "one.png", dpi=50)
    assert len(one.axes) == 1 and sum(curve.get_linewidth() == DEEP_LINEWIDTH for curve in one.axes[0].lines) == 1
    with pytest.raises(ValueError, match="no identity rows for spaces \\['W'\\]"):
        identity_vs_step_plot(identity, spaces=["W"], path=tmp_path / "x.png")


def test_identity_plot_has_a_row_of_panels_per_target_set(tmp_path):
    real, in_domain = planted_identity(), planted_identity()
    in_domain["similarity"] -= 0.5
    frame = pd.concat([real.assign(target_set="real"), in_domain.assign(target_set="in-domain")], ignore_index=True)
    bands = {"real": {"floor": (0.1, 0.2)}, "in-domain": {"floor": (0.3, 0.4), "ceiling": (0.9, 0.95)}}
    figure = identity_vs_step_plot(frame, spaces=SPACES, path=tmp_path / "sets.png", bands=bands, dpi=50)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [
        "ganspace: real targets",
        "interfacegan: real targets",
        "ganspace: in-domain targets",
        "interfacegan: in-domain targets",
    ]
    lower = figure.axes[2]
    deep = [line for line in lower.lines if line.get_linewidth() == DEEP_LINEWIDTH]
    rows = in_domain[(in_domain.space == SPACES[0]) & (in_domain.family == "ganspace")]
    np.testing.assert_allclose(deep[0].get_ydata(), rows.groupby("alpha").similarity.mean().to_numpy())
    assert len(lower.patches) == 2 and len(figure.axes[0].patches) == 1  # each set's own floor and ceiling bands


def test_reconstruction_grid_layout_and_captions(tmp_path):
    rng = np.random.default_rng(1)
    targets = torch.from_numpy(rng.uniform(-1, 1, (3, 3, 16, 16))).float()
    recons = {"F/Z+": targets * 0.9, "Z": rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)}
    metrics = pd.DataFrame(
        dict(
            space="F/Z+",
            image_id=["i0", "i1", "i2"],
            mse=[0.01742, 0.02, 0.03],
            ssim=0.8,
            perceptual=[0.11330, np.nan, 0.2],
        )
    )
    path = tmp_path / "fig2.png"
    figure = reconstruction_grid(
        targets,
        recons,
        image_ids=["i0", "i1", "i2"],
        spaces=["F/Z+", "Z"],
        path=path,
        per_image_metrics=metrics,
        cell_inches=1.0,
        dpi=40,
    )
    width = GRID_LABEL_INCHES + 3 * 1.0
    height = GRID_HEADER_INCHES + 3 * (1.0 + GRID_CAPTION_INCHES)
    assert png_size(path) == (round(width * 40), round(height * 40))
    assert len(figure.axes) == 3  # one strip per row
    texts = [t.get_text() for t in figure.texts]
    assert {"target", "F/Z+", "Z", "i0", "i1", "i2"} <= set(texts)
    assert "MSE 0.0174\nLPIPS 0.1133" in texts and "MSE 0.0200\nLPIPS n/a" in texts and texts.count("no metrics") == 3
    strip = figure.axes[-1].images[0].get_array()  # row "Z": 3 images with white gaps between them
    np.testing.assert_array_equal(strip[:, -16:], recons["Z"][2])
    np.testing.assert_array_equal(strip[:, :16], recons["Z"][0])
    assert strip.shape[1] > 3 * 16 and (strip[:, 16] == 255).all()
    with pytest.raises(KeyError, match="'W'"):
        reconstruction_grid(targets, recons, image_ids=["i0", "i1", "i2"], spaces=["W"], path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="2 image_ids"):
        reconstruction_grid(targets, recons, image_ids=["i0", "i1"], spaces=["Z"], path=tmp_path / "x.png")


def test_editing_grid_size_and_determinism(tmp_path):
    rows = [
        (space, torch.linspace(-1, 1, 4 * 3 * 8 * 8).reshape(4, 3, 8, 8) * sign)
        for space, sign in (("F/W+(P_N)", 1), ("F/Z+", -1))
    ]
    labels = ["-2.0", "-0.7", "0.7", "2.0"]
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    editing_grid(rows, column_labels=labels, path=first, cell_inches=0.8, dpi=50)
    editing_grid(rows, column_labels=labels, path=second, cell_inches=0.8, dpi=50)
    assert png_size(first) == (round((GRID_LABEL_INCHES + 4 * 0.8) * 50), round((GRID_HEADER_INCHES + 2 * 0.8) * 50))
    assert first.read_bytes() == second.read_bytes()
    with pytest.raises(ValueError, match="3 images for 4 column labels"):
        editing_grid([("F/Z+", rows[0][1][:3])], column_labels=labels, path=tmp_path / "c.png")


def test_loss_curves(tmp_path):
    steps = np.arange(20)
    losses = pd.concat(
        [
            pd.DataFrame(
                dict(
                    space=space,
                    image_id=image_id,
                    step=steps,
                    total=scale * np.exp(-steps / 5),
                    mse=scale * 0.1,
                    perceptual=0.0,
                )
            )
            for space, scale in (("Z", 2.0), ("F/Z+", 1.0))
            for image_id in ("a", "b")
        ]
    )
    path = tmp_path / "losses.png"
    figure = loss_curves(losses, path=path, panel_inches=(3.0, 2.0), dpi=50)
    assert png_size(path) == (3 * 3 * 50, 2 * 50)
    assert [ax.get_yscale() for ax in figure.axes] == ["log", "log", "linear"]  # perceptual is 0 throughout
    assert all([curve.get_label() for curve in ax.lines] == ["Z", "F/Z+"] for ax in figure.axes)
    np.testing.assert_allclose(figure.axes[0].lines[1].get_ydata(), np.exp(-steps / 5))
    with pytest.raises(KeyError, match="reg"):
        loss_curves(losses, path=path, columns=("reg",))


def test_space_colours_are_fixed_and_distinct():
    colours = space_colours(["F/Z+", "NEW1", "NEW2"])
    assert colours["F/Z+"] == PAPER_COLOURS["F/Z+"] and len(set(colours.values())) == 3
    assert len(set(PAPER_COLOURS.values())) == len(PAPER_COLOURS)
    import spaces

    assert set(spaces.names()) <= set(PAPER_COLOURS)  # every shipped plugin keeps its colour in every figure


def test_editing_grid_row_labels_fit_inside_the_figure(tmp_path):
    # "005735 mouth_open" was cut at the figure's left edge by a fixed 1-inch label column
    import torch

    from benchmarks.report.figures import editing_grid

    images = torch.zeros(3, 3, 8, 8)
    figure = editing_grid(
        [("005735 mouth_open", images), ("a", images)], column_labels=["-1", "0", "+1"], path=tmp_path / "g.png"
    )
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    labels = [t for t in figure.texts if t.get_text() == "005735 mouth_open"]
    assert labels and labels[0].get_window_extent(renderer).x0 >= 0
