"""benchmarks.studies.step_convergence: two runs that differ in inversion steps, compared side by side."""

from __future__ import annotations

import pathlib

import pandas as pd
import pytest

from benchmarks.studies.step_convergence import compare_runs

SPACES = {"F/Z+": "f_z_plus", "F/W+(P_N)": "f_w_plus_pn", "W+": "w_plus"}


def write_run(root, *, steps: int, mse: dict, p_mse: float, identity: dict, plateau: int | None = None, editing=None):
    for slug in SPACES.values():
        folder = root / "inversion" / slug
        folder.mkdir(parents=True)
        # still falling: the last 10 % of steps lose 1 - t[-1]/t[-1-tail]; or flat from step `plateau` on
        total = [1.0 / (1 + min(s, plateau or s)) for s in range(steps)]
        pd.DataFrame(dict(image_id="a", step=range(steps), total=total, mse=total, perceptual=0.0, reg=0.0)).to_csv(
            folder / "losses.csv", index=False
        )
    tables = root / "tables"
    tables.mkdir()
    pd.DataFrame(
        [
            dict(
                space=n, n=2, mse_mean=mse[n], mse_sd=0, ssim_mean=0.5, ssim_sd=0, perceptual_mean=0.1, perceptual_sd=0
            )
            for n in SPACES
        ]
    ).to_csv(tables / "table1.csv", index=False)
    pd.DataFrame(
        [dict(candidate="F/Z+", reference="F/W+(P_N)", metric="mse", p_value=p_mse, non_inferior=p_mse < 0.05)]
    ).to_csv(tables / "noninferiority.csv", index=False)
    pd.DataFrame([dict(space=n, family="all", mean_similarity=identity[n]) for n in SPACES]).to_csv(
        tables / "identity.csv", index=False
    )
    if editing is not None:
        pd.DataFrame(
            [dict(candidate="F/Z+", reference="F/W+(P_N)", metric="fidelity_perceptual", p_value=0.01, verdict=editing)]
        ).to_csv(tables / "editing_verdicts.csv", index=False)


def test_agreeing_runs_report_the_same_ranking_and_verdicts(tmp_path):
    write_run(
        tmp_path / "a",
        steps=10,
        mse={"F/Z+": 0.1, "F/W+(P_N)": 0.2, "W+": 0.3},
        p_mse=0.01,
        identity={"F/Z+": 0.9, "F/W+(P_N)": 0.8, "W+": 0.7},
    )
    write_run(
        tmp_path / "b",
        steps=40,
        mse={"F/Z+": 0.05, "F/W+(P_N)": 0.1, "W+": 0.2},
        p_mse=0.001,
        identity={"F/Z+": 0.95, "F/W+(P_N)": 0.85, "W+": 0.7},
    )
    per_space, verdicts, facts = compare_runs(tmp_path / "a", tmp_path / "b")
    assert facts == dict(
        steps=("cap", "4x"),
        kendall_tau_mse_rank=pytest.approx(1.0),
        same_mse_ranking=True,
        same_verdicts=True,
        all_within_5pct=False,  # the loss still falls: 0.1 at the cap, 0.025 at 4x
    )
    row = per_space.set_index("space").loc["F/Z+"]
    assert row["mse@cap"] == 0.1 and row["mse@4x"] == 0.05
    assert row["loss_fall_last10%@cap"] == pytest.approx(1 - (1 / 10) / (1 / 9))
    assert list(verdicts.verdict) == ["F/Z+ vs F/W+(P_N): mse non-inferior", "F/Z+ vs F/W+(P_N): higher mean identity"]


def test_a_flipped_verdict_and_ranking_are_reported(tmp_path):
    write_run(
        tmp_path / "a",
        steps=10,
        mse={"F/Z+": 0.1, "F/W+(P_N)": 0.2, "W+": 0.3},
        p_mse=0.2,
        identity={"F/Z+": 0.7, "F/W+(P_N)": 0.8, "W+": 0.7},
    )
    write_run(
        tmp_path / "b",
        steps=40,
        mse={"F/Z+": 0.3, "F/W+(P_N)": 0.2, "W+": 0.1},
        p_mse=0.001,
        identity={"F/Z+": 0.9, "F/W+(P_N)": 0.8, "W+": 0.7},
    )
    _, verdicts, facts = compare_runs(tmp_path / "a", tmp_path / "b")
    assert not facts["same_mse_ranking"] and not facts["same_verdicts"]
    assert facts["kendall_tau_mse_rank"] == pytest.approx(-1.0)
    assert list(verdicts["holds@cap"]) == [False, False] and list(verdicts["holds@4x"]) == [True, True]


def test_rows_on_their_plateau_are_within_5pct_and_editing_verdicts_are_compared(tmp_path):
    common = dict(mse={"F/Z+": 0.1, "F/W+(P_N)": 0.2, "W+": 0.3}, p_mse=0.01, plateau=6)
    write_run(tmp_path / "a", steps=10, identity={n: 0.5 for n in SPACES}, editing="equivalent", **common)
    write_run(tmp_path / "b", steps=40, identity={n: 0.5 for n in SPACES}, editing="worse", **common)
    per_space, verdicts, facts = compare_runs(tmp_path / "a", tmp_path / "b")
    assert per_space["within_5pct"].all() and facts["all_within_5pct"]
    row = verdicts.set_index("verdict").loc["F/Z+ vs F/W+(P_N): fidelity_perceptual editing verdict"]
    assert (row["holds@cap"], row["holds@4x"]) == ("equivalent", "worse")
    assert not facts["same_verdicts"]


def write_flat_run(run_dir, *, steps: int, targets: dict[str, dict[str, float]]) -> pathlib.Path:
    """A finished run whose every space holds, per target set folder ("inversion", "ground_truth/inversion"), images at
    a constant loss (id -> value); per-image metrics.csv for the real targets, empty verdict tables. -> its tables/"""
    for target_set, images in targets.items():
        for space, slug in SPACES.items():
            folder = run_dir / target_set / slug
            folder.mkdir(parents=True)
            rows = [
                dict(image_id=i, step=s, total=v, mse=v, perceptual=0.0, reg=0.0)
                for i, v in images.items()
                for s in range(steps)
            ]
            pd.DataFrame(rows).to_csv(folder / "losses.csv", index=False)
            if target_set == "inversion":
                metrics = [
                    dict(space=space, image_id=i, mse=v, ssim=0.5, perceptual=0.1, image_steps=steps)
                    for i, v in images.items()
                ]
                pd.DataFrame(metrics).to_csv(folder / "metrics.csv", index=False)
    tables = run_dir / "tables"
    tables.mkdir()
    pd.DataFrame(columns=["candidate", "reference", "metric", "p_value", "non_inferior"]).to_csv(
        tables / "noninferiority.csv", index=False
    )
    pd.DataFrame([dict(space=n, mse_mean=9.9) for n in SPACES]).to_csv(tables / "table1.csv")
    return tables


def test_a_subset_rerun_is_compared_on_the_images_both_runs_inverted(tmp_path):
    # the default run has images a and b; the 4x re-run only a: b's (much higher) loss must not enter the comparison
    for run, steps, images in (("default", 10, {"a": 0.10, "b": 5.0}), ("longer", 40, {"a": 0.099})):
        write_flat_run(tmp_path / run, steps=steps, targets={"inversion": images})
    per_space, verdicts, facts = compare_runs(tmp_path / "default", tmp_path / "longer")
    assert per_space["loss@cap"].tolist() == pytest.approx([0.10] * 3)  # image b left out
    assert per_space["mse@cap"].tolist() == pytest.approx([0.10] * 3)  # Table 1 from image a's rows, not table1.csv
    assert per_space["within_5pct"].all() and facts["all_within_5pct"]
    assert verdicts.empty  # the verdicts need every image


def test_a_run_with_fewer_real_targets_compares_in_domain_losses_and_verdicts(tmp_path):
    # the 4x run re-did every in-domain target but only one of two real ones: the in-domain verdicts (fidelity) are
    # compared, the real-target ones (identity on photos) are not; a row is within 5 % only on both target sets
    for run, steps, real, generated, fidelity in (
        ("default", 10, {"a": 0.10, "b": 0.2}, {"g1": 0.30, "g2": 0.30}, "equivalent"),
        ("longer", 40, {"a": 0.10}, {"g1": 0.20, "g2": 0.20}, "worse"),
    ):
        tables = write_flat_run(
            tmp_path / run, steps=steps, targets={"inversion": real, "ground_truth/inversion": generated}
        )
        pd.DataFrame(
            [
                dict(candidate="F/Z+", reference="F/W+(P_N)", metric=m, p_value=0.01, verdict=v)
                for m, v in (("fidelity_perceptual", fidelity), ("identity", "better"))
            ]
        ).to_csv(tables / "editing_verdicts.csv", index=False)
    per_space, verdicts, facts = compare_runs(tmp_path / "default", tmp_path / "longer")
    row = per_space.set_index("space").loc["F/Z+"]
    assert row["loss@cap"] == pytest.approx(0.10) and row["loss_in_domain@cap"] == pytest.approx(0.30)
    assert row["loss_ratio_worst"] == pytest.approx(1.5) and not row["within_5pct"]
    assert list(verdicts.verdict) == ["F/Z+ vs F/W+(P_N): fidelity_perceptual editing verdict"]
    assert tuple(verdicts.iloc[0][["holds@cap", "holds@4x"]]) == ("equivalent", "worse")
    assert facts["same_verdicts"] is False and facts["all_within_5pct"] is False


def test_a_run_that_kept_each_images_best_iterate_is_compared_on_it(tmp_path):
    # the run's recorded config says keep_best: an image whose loss spiked at the end counts at its lowest loss
    import json

    from benchmarks.studies.step_convergence import kept_best_from, loss_summary

    (tmp_path / "provenance.json").write_text(
        json.dumps({"config": {"inversion": {"steps": 4, "keep_best": True, "sam": {"keep_best": False}}}})
    )
    best_from = kept_best_from(tmp_path)
    assert best_from["F/Z+"] == 0 and "SAM" not in best_from
    losses = pd.DataFrame(
        dict(
            space="F/Z+",
            image_id=["a"] * 4 + ["b"] * 4,
            step=[0, 1, 2, 3] * 2,
            total=[1.0, 0.2, 0.5, 0.5, 1.0, 0.4, 0.3, 0.3],
            mse=[0.1, 0.02, 0.05, 0.05, 0.1, 0.04, 0.03, 0.03],
        )
    )
    kept = loss_summary(losses, best_from=best_from).iloc[0]
    last = loss_summary(losses).iloc[0]
    assert kept.loss_last == pytest.approx(0.25) and kept.mse_last == pytest.approx(0.025)
    assert last.loss_last == pytest.approx(0.4)


def test_a_run_that_edited_only_the_pairs_gets_their_verdicts_from_its_edits(tmp_path, monkeypatch):
    # the 4x run stopped after the compared pairs' edits: no tables at all. Table 1 comes from its per-image rows and
    # the pairs' editing verdicts from the editing stage run on the pairs' edit folders; the verdict at a matched
    # attribute change is left out (its levels depend on every space)
    import json

    import benchmarks.pipeline.editing as editing_stage

    calls = []

    def fake_tables_stage(cfg, *, edits_dirs, references_dir, tables_dir):
        calls.append(sorted(edits_dirs))
        pd.DataFrame(
            [
                dict(candidate="F/Z+", reference="F/W+(P_N)", metric=m, p_value=0.01, verdict="worse")
                for m in ("fidelity_perceptual", "identity_matched_in_domain")
            ]
        ).to_csv(pathlib.Path(tables_dir) / "editing_verdicts.csv", index=False)

    monkeypatch.setattr(editing_stage, "editing_tables_stage", fake_tables_stage)
    generated = {"g1": 0.3}
    tables = write_flat_run(
        tmp_path / "default", steps=10, targets={"inversion": {"a": 0.1, "b": 0.2}, "ground_truth/inversion": generated}
    )
    cap_verdict = dict(candidate="F/Z+", reference="F/W+(P_N)", metric="fidelity_perceptual", p_value=0.01)
    pd.DataFrame([cap_verdict | dict(verdict="equivalent")]).to_csv(tables / "editing_verdicts.csv", index=False)
    config = {"statistics": {"pairs": [["F/Z+", "F/W+(P_N)"]]}, "inversion": {"steps": 10}}
    (tmp_path / "default" / "provenance.json").write_text(json.dumps({"config": config}))
    longer = tmp_path / "longer"
    write_flat_run(longer, steps=40, targets={"inversion": {"a": 0.1}, "ground_truth/inversion": generated})
    for name in ("table1.csv", "noninferiority.csv"):
        (longer / "tables" / name).unlink()
    (longer / "editing").mkdir()
    for slug in ("f_z_plus", "f_w_plus_pn"):
        (longer / "edits" / slug).mkdir(parents=True)
        (longer / "edits" / slug / "fidelity.csv").write_text("space\n")

    per_space, verdicts, facts = compare_runs(tmp_path / "default", longer)
    assert calls == [["F/W+(P_N)", "F/Z+"]]  # only the longer run lacks its tables; only the pair's spaces
    assert per_space.set_index("space").loc["F/Z+", "mse@4x"] == pytest.approx(0.1)
    assert list(verdicts.verdict) == ["F/Z+ vs F/W+(P_N): fidelity_perceptual editing verdict"]
    assert tuple(verdicts.iloc[0][["holds@cap", "holds@4x"]]) == ("equivalent", "worse")
    assert facts["same_verdicts"] is False
