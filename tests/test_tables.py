"""Tables: Table 1 statistics and order, markdown/HTML rendering, identity table counts, non-inferiority
rendering, atomic writers and CSV collection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.report.tables import (
    ALL_FAMILIES,
    PAPER_SPACE_ORDER,
    collect_csvs,
    identity_table,
    noninferiority_markdown,
    order_spaces,
    table1,
    table1_display,
    to_html,
    to_markdown,
    write_table,
)
from benchmarks.statistics.noninferiority import non_inferiority_table


def planted_metrics(spaces=("F/Z+", "Z", "NEW", "F/W+(P_N)", "W+"), *, n: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        [
            dict(
                space=s,
                image_id=f"img{i}",
                mse=rng.uniform(0, 0.2),
                ssim=rng.uniform(0.5, 0.9),
                perceptual=rng.uniform(0.1, 0.6),
            )
            for s in spaces
            for i in range(n)
        ]
    )


def test_table1_statistics_and_paper_order():
    metrics = planted_metrics().sample(frac=1.0, random_state=1)  # shuffled rows
    table = table1(metrics)
    assert table.space.tolist() == ["Z", "W+", "F/Z+", "F/W+(P_N)", "NEW"]  # paper order, unknown spaces last
    for _, row in table.iterrows():
        subset = metrics[metrics.space == row.space]
        assert row.n == len(subset) == 6
        for metric in ("mse", "ssim", "perceptual"):
            values = subset[metric].to_numpy()
            assert row[f"{metric}_mean"] == pytest.approx(values.sum() / 6, rel=1e-12)
            assert row[f"{metric}_sd"] == pytest.approx(np.sqrt(((values - values.mean()) ** 2).sum() / 5), rel=1e-12)
    split = [metrics[metrics.space == s] for s in ("NEW", "Z", "W+", "F/Z+", "F/W+(P_N)")]
    pd.testing.assert_frame_equal(table1(split), table)


def test_order_spaces_covers_every_required_space():
    assert order_spaces(reversed(PAPER_SPACE_ORDER)) == list(PAPER_SPACE_ORDER)
    assert PAPER_SPACE_ORDER.index("F/Z+") == PAPER_SPACE_ORDER.index("F/Z") + 1


def test_table1_missing_values():
    metrics = planted_metrics(("Z", "F/Z+"))
    metrics.loc[metrics.space == "Z", "perceptual"] = np.nan  # not computed for a whole space: stays NaN
    table = table1(metrics)
    assert np.isnan(table.set_index("space").loc["Z", "perceptual_mean"])
    assert table1_display(table, perceptual_label="LPIPS").set_index("space").loc["Z", "LPIPS"] == "not computed"
    metrics.loc[metrics.index[-1], "ssim"] = np.nan  # missing for one image only: an error
    with pytest.raises(ValueError, match="ssim is missing for 1 of 6 images of space 'F/Z\\+'"):
        table1(metrics)
    with pytest.raises(ValueError, match="listed twice"):
        table1(pd.concat([planted_metrics(("Z",)), planted_metrics(("Z",)).head(1)]))
    with pytest.raises(KeyError, match="perceptual"):
        table1(planted_metrics(("Z",)).drop(columns="perceptual"))


def test_table1_shows_each_rows_budget():
    metrics = planted_metrics(("Z", "W"))
    metrics["image_steps"] = [10 + i for i in range(len(metrics))]
    table = table1(metrics).set_index("space")
    for space, rows in metrics.groupby("space"):
        assert table.loc[space, "steps_mean"] == rows.image_steps.mean()
        assert table.loc[space, "steps_max"] == rows.image_steps.max()
    shown = table1_display(table.reset_index()).set_index("space")["steps per image, mean (max)"]
    assert shown["W"] == f"{table.loc['W', 'steps_mean']:.0f} ({table.loc['W', 'steps_max']:.0f})"


def test_markdown_has_a_header_and_one_row_per_space():
    table = table1(planted_metrics())
    text = to_markdown(table1_display(table, float_format="{:.3f}", perceptual_label="ST-LPIPS"))
    lines = text.strip().split("\n")
    assert len(lines) == 2 + len(table)
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["space", "n", "MSE", "SSIM", "ST-LPIPS"]
    assert set(lines[1]) <= set("|-:") and lines[1].split("|")[2].endswith(":")  # n is right-aligned
    for line, (_, row) in zip(lines[2:], table.iterrows()):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row.space and cells[1] == str(row.n)
        assert cells[2] == f"{row.mse_mean:.3f} ± {row.mse_sd:.3f}"


def test_markdown_and_html_cells():
    frame = pd.DataFrame(dict(name=["a|b", "<x>"], value=[0.123456, np.nan], ok=[True, False]))
    text = to_markdown(frame, float_format={"value": "{:.2f}"}, na_rep="-")
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in text.strip().split("\n")[2:]]
    assert rows == [["a\\|b", "0.12", "yes"], ["<x>", "-", "no"]]
    page = to_html(frame, float_format="{:.2f}")
    assert "&lt;x&gt;" in page and "<x>" not in page and page.count("<tr>") == 3 and 'class="num"' in page


def planted_identity() -> pd.DataFrame:
    rows = []
    for space, base in (("F/Z+", 0.8), ("F/W+", 0.6)):
        for family in ("ganspace", "random"):
            for direction in ("d0", "d1"):
                for image_id in ("a", "b", "c"):
                    for alpha in (-2.0, 0.0, 2.0):
                        rows.append(
                            dict(
                                space=space,
                                family=family,
                                direction=direction,
                                image_id=image_id,
                                alpha=alpha,
                                similarity=base - 0.1 * abs(alpha),
                                distance=0.0,
                                target_detected=True,
                                edited_detected=True,
                            )
                        )
    frame = pd.DataFrame(rows)
    zp = frame.space == "F/Z+"
    frame.loc[zp & (frame.image_id == "b"), "target_detected"] = False  # one target image
    frame.loc[zp & (frame.family == "random") & (frame.alpha == 2.0), "edited_detected"] = False  # 6 edits
    frame.loc[zp & (frame.family == "random") & (frame.alpha == 2.0) & (frame.image_id == "c"), "similarity"] = np.nan
    return frame


def test_identity_table_means_and_undetected_counts():
    table = identity_table(planted_identity()).set_index(["space", "family"])
    assert list(table.index.get_level_values(0).unique()) == ["F/Z+", "F/W+"]  # paper order
    zp_random, zp_all = table.loc[("F/Z+", "random")], table.loc[("F/Z+", ALL_FAMILIES)]
    assert zp_random.n == 18 and zp_random.n_images == 3
    assert zp_random.targets_undetected == 1 and zp_random.edited_undetected == 6 and zp_random.n_missing == 2
    # the mean skips the two NaN similarities (each 0.8 - 0.2): 16 remaining values
    assert zp_random.mean_similarity == pytest.approx((6 * 0.6 + 6 * 0.8 + 4 * 0.6) / 16)
    assert zp_all.n == 36 and zp_all.targets_undetected == 1 and zp_all.edited_undetected == 6
    fw = table.loc[("F/W+", ALL_FAMILIES)]
    assert fw.mean_similarity == pytest.approx((0.4 + 0.6 + 0.4) / 3) and fw.targets_undetected == 0


def test_noninferiority_markdown_names_test_and_margin():
    metrics = planted_metrics(("F/Z+", "F/W+(P_N)"), n=8)
    result = non_inferiority_table(
        metrics,
        [("F/Z+", "F/W+(P_N)", "mse"), ("F/Z+", "F/W+(P_N)", "ssim")],
        margin=1e-8,
        test="wilcoxon",
        image_column="image_id",
    )
    text = noninferiority_markdown(result)
    caption, table = text.split("\n\n", 1)
    assert "wilcoxon" in caption and "margin 1e-08" in caption and "confidence 0.95" in caption
    lines = table.strip().split("\n")
    assert len(lines) == 4 and "bound_side" in lines[0] and "p_value" in lines[0]
    assert f"{result.p_value.iloc[0]:.4g}" in lines[2] and "| mse" in lines[2] and "upper" in lines[2]
    with pytest.raises(KeyError, match="margin"):
        noninferiority_markdown(result.drop(columns="margin"))


def test_write_table_and_collect(tmp_path):
    table = table1(planted_metrics())
    write_table(table, tmp_path / "tables" / "table1.csv", markdown="# md\n")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "tables" / "table1.csv"), table)
    assert (tmp_path / "tables" / "table1.md").read_text() == "# md\n"
    assert not [p for p in (tmp_path / "tables").iterdir() if p.name.startswith(".")]  # no temporary left over
    with pytest.raises(ValueError, match=".csv"):
        write_table(table, tmp_path / "table1.txt", markdown="")
    assert collect_csvs(tmp_path, "inversion/*/metrics.csv").empty
    for slug, space in (("z", "Z"), ("f_z_plus", "F/Z+")):
        (tmp_path / "inversion" / slug).mkdir(parents=True)
        planted_metrics((space,), n=2).to_csv(tmp_path / "inversion" / slug / "metrics.csv", index=False)
    collected = collect_csvs(tmp_path, "inversion/*/metrics.csv")
    assert len(collected) == 4 and dict(zip(collected.space, collected.space_slug)) == {"F/Z+": "f_z_plus", "Z": "z"}


def test_edit_strength_table_pairs_each_z_direction_with_its_w_namesake_and_takes_the_ratio():
    from benchmarks.report.tables import edit_strength_table

    directions = pd.DataFrame(
        dict(
            method=["ganspace", "ganspace", "ganspace", "interfacegan-released", "interfacegan"],
            domain=["Z", "Z", "W", "Z", "W"],
            direction=["pc1", "pc2", "pc1", "smile", "smile"],
            image_distance_per_unit=[0.2, 0.4, 0.1, 0.05, 0.1],
        )
    )
    table = edit_strength_table(directions).set_index(["family", "direction"])
    assert len(table) == 3  # one row per direction, not per family
    assert table.loc[("ganspace", "pc1"), "z_over_w"] == pytest.approx(2.0)
    assert np.isnan(table.loc[("ganspace", "pc2"), "w_image_distance_per_unit"])  # found in Z only
    assert table.loc[("interfacegan", "smile"), "z_over_w"] == pytest.approx(0.5)  # released Z boundaries pair too
    with pytest.raises(KeyError, match="image_distance_per_unit"):
        edit_strength_table(directions.drop(columns="image_distance_per_unit"))
    with pytest.raises(ValueError, match="listed twice"):
        edit_strength_table(pd.concat([directions, directions.iloc[:1]]))
