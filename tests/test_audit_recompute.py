"""benchmarks.audit.recompute on a small synthetic results folder whose tables the suite's own stages wrote: an
untouched folder passes, and each kind of tampering is caught and named (file, row, column, expected, found)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import spaces
from benchmarks.audit.cells import Band, Words
from benchmarks.audit.recompute import recompute_per_image_rows, recompute_tables, summarize
from benchmarks.audit.verdicts import _judged

SPACES = ["Z+", "W+", "F/Z+", "F/W+(P_N)"]
QUALITY = {"Z+": 0.0, "W+": 0.02, "F/Z+": 0.08, "F/W+(P_N)": 0.05}  # how much better each space edits, made up
IMAGES, IN_DOMAIN, ALPHAS = [f"im{i}" for i in range(6)], [f"g{i}" for i in range(6)], [-2.0, -1.0, 0.0, 1.0, 2.0]
CONFIG = dict(
    seed=0,
    inversion=dict(spaces=SPACES, budget_matched_pivots=True),
    perceptual=dict(backend="stlpips-vgg"),
    editing=dict(matched_strength=dict(at_alpha=1.0)),
    statistics=dict(
        test="paired-t",
        margin=1e-8,
        confidence=0.95,
        pairs=[["F/Z+", "F/W+(P_N)"], ["Z+", "W+"]],
        metrics=["mse", "ssim"],
        bootstrap_samples=200,
        min_separation=0.25,
        equivalence=dict(fraction=0.05, metrics={}),
    ),
)
TABLES = ("table1", "noninferiority", "identity", "edit_fidelity", "realism", "editing_verdicts")
RESAMPLES = 4000  # this module's draws in the tests: enough for bands, quick


def _sweep(space: str, ids: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """An identity sweep: a GANSpace direction and the InterFaceGAN smile, whose attribute score moves with alpha."""
    rows = []
    for family, direction in (("ganspace", "pc1"), ("interfacegan", "smile")):
        for image_id in ids:
            for alpha in ALPHAS:
                similarity = 0.8 + QUALITY[space] - 0.12 * abs(alpha) + rng.normal(0, 0.02)
                score = 0.3 + 0.05 * alpha * (1 + QUALITY[space]) + rng.normal(0, 0.005)
                rows.append(
                    dict(
                        space=space,
                        family=family,
                        direction=direction,
                        image_id=image_id,
                        alpha=alpha,
                        similarity=similarity,
                        distance=1 - similarity,
                        target_detected=True,
                        edited_detected=bool(abs(alpha) < 2 or rng.random() > 0.2),
                        attribute_score=score if family == "interfacegan" else np.nan,
                    )
                )
    return pd.DataFrame(rows)


def _references(metric: str, ids: list[str], rng: np.random.Generator, *, lower: bool) -> pd.DataFrame:
    levels = dict(jpeg=("ceiling", 0.9), mirror=("ceiling", 0.85), other=("floor", 0.25), gray=("floor", 0.1))
    rows = []
    for reference, (kind, level) in levels.items():
        for image_id in ids:
            value = (1 - level if lower else level) + rng.normal(0, 0.01)
            rows.append(dict(reference=reference, kind=kind, image_id=image_id, value=value, metric=metric))
    return pd.DataFrame(rows)


def _build(root) -> None:
    """A results folder with per-image rows and the tables written by the suite's own stages."""
    from benchmarks.metrics.reconstruction import reconstruction_metrics_from_files
    from benchmarks.pipeline.editing import editing_tables_stage
    from benchmarks.pipeline.evaluate import tables_stage

    rng = np.random.default_rng(7)
    (root / "targets/images").mkdir(parents=True)
    pd.DataFrame(dict(image_id=IMAGES)).to_csv(root / "targets/targets.csv", index=False)
    targets = {i: rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for i in IMAGES}
    for image_id, image in targets.items():
        Image.fromarray(image).save(root / f"targets/images/{image_id}.png")
    (root / "editing").mkdir()
    baselines = [
        _references("identity", IMAGES, rng, lower=False),
        _references("identity_in_domain", IN_DOMAIN, rng, lower=False),
        *(_references(f"fidelity_{m}", IN_DOMAIN, rng, lower=True) for m in ("perceptual", "mse")),
    ]
    pd.concat(baselines).to_csv(root / "editing/baselines.csv", index=False)
    kids = dict(samples=("ceiling", 1e-3), targets=("check", 0.3), blur=("floor", 0.6), gray=("floor", 0.9))
    kid_rows = [dict(reference=r, kind=k, kid=v) for r, (k, v) in kids.items()]
    pd.DataFrame(kid_rows).to_csv(root / "editing/realism_baselines.csv", index=False)
    np.savez(root / "editing/realism_reference.npz", features=rng.normal(0, 1, (12, 8)))
    for name in SPACES:
        slug = spaces.get(name).slug
        recon_dir, edits = root / f"inversion/{slug}/recon", root / f"edits/{slug}"
        recon_dir.mkdir(parents=True)
        edits.mkdir(parents=True)
        for image_id, image in targets.items():
            noise = rng.normal(0, 40 * (1.2 - QUALITY[name] * 5), image.shape)
            Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8)).save(recon_dir / f"{image_id}.png")
        metrics = reconstruction_metrics_from_files(root / "targets/images", recon_dir, space=name, image_ids=IMAGES)
        metrics.assign(image_steps=3).to_csv(recon_dir.parent / "metrics.csv", index=False)
        _sweep(name, IMAGES, rng).to_csv(edits / "identity.csv", index=False)
        _sweep(name, IN_DOMAIN, rng).to_csv(edits / "identity_in_domain.csv", index=False)
        fidelity = _sweep(name, IN_DOMAIN, rng)[["space", "family", "direction", "image_id", "alpha"]]
        error = 0.3 - QUALITY[name] + 0.05 * fidelity.alpha.abs() + rng.normal(0, 0.01, len(fidelity))
        fidelity = fidelity.assign(perceptual=error, mse=error / 2, true_edit_perceptual=0.1, true_edit_mse=0.05)
        fidelity.to_csv(edits / "fidelity.csv", index=False)
        alpha = np.array([0.0] * 6 + [2.0, -2.0] * 6)
        ids = np.array(IMAGES + [i for i in IMAGES for _ in range(2)])
        features = rng.normal(QUALITY[name], 1, (len(alpha), 8))
        np.savez(edits / "realism.npz", features=features, family="random", direction="r", image_id=ids, alpha=alpha)
    slugs = [spaces.get(n).slug for n in SPACES]
    tables_stage(
        CONFIG,
        metrics_paths=[str(root / f"inversion/{s}/metrics.csv") for s in slugs],
        identity_paths=[str(root / f"edits/{s}/identity.csv") for s in slugs],
        tables_dir=root / "tables",
    )
    edits_dirs = {n: str(root / f"edits/{spaces.get(n).slug}") for n in SPACES}
    editing_tables_stage(CONFIG, edits_dirs=edits_dirs, references_dir=root / "editing", tables_dir=root / "tables")
    (root / "provenance.json").write_text(json.dumps(dict(config=CONFIG)))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    _build(root)
    return root


@pytest.fixture
def run(pristine, tmp_path):
    """A copy of the synthetic run, to tamper with."""
    return shutil.copytree(pristine, tmp_path / "run")


def _failures(checks):
    return [c for c in checks if not c.ok]


def test_untouched_run_passes(pristine):
    tables, rows = recompute_tables(pristine, resamples=RESAMPLES), recompute_per_image_rows(pristine)
    assert _failures(tables + rows) == []
    summary = summarize(tables).set_index("subject")
    assert set(summary.index) == {f"tables/{t}.csv" for t in TABLES}
    assert (summary.cells > 10).all()
    words = pd.read_csv(pristine / "tables/editing_verdicts.csv").verdict
    assert {"better", "worse"} & set(words), "the synthetic run should reach some verdicts"
    assert len(rows) == len(SPACES) * len(IMAGES) * 2


@pytest.mark.parametrize(
    "table, row, column",
    [
        ("table1", {"space": "F/Z+"}, "mse_mean"),
        ("table1", {"space": "W+"}, "ssim_sd"),
        ("noninferiority", {"candidate": "Z+", "metric": "ssim"}, "p_value"),
        ("noninferiority", {"candidate": "F/Z+", "metric": "mse"}, "confidence_bound"),
        ("identity", {"space": "W+", "family": "all"}, "mean_similarity"),
        ("edit_fidelity", {"space": "Z+", "alpha": "2.0"}, "mse"),
        ("realism", {"space": "F/Z+", "abs_alpha": "2.0"}, "kid"),
        ("editing_verdicts", {"candidate": "F/Z+", "metric": "identity"}, "mean_improvement"),
        ("editing_verdicts", {"candidate": "Z+", "metric": "fidelity_mse"}, "margin"),
    ],
)
def test_a_cell_changed_by_1e3_is_caught_and_named(run, table, row, column):
    path = run / f"tables/{table}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    where = np.logical_and.reduce([frame[k] == v for k, v in row.items()])
    assert where.sum() == 1
    before = frame.loc[where, column].iloc[0]
    frame.loc[where, column] = repr(float(before) + 1e-3)
    frame.to_csv(path, index=False)
    failures = _failures(recompute_tables(run, resamples=RESAMPLES))
    assert len(failures) == 1
    failure = failures[0]
    assert failure.subject == f"tables/{table}.csv"
    assert failure.item.startswith("row ") and failure.item.endswith(f"| {column}")
    assert all(str(v) in failure.item for v in row.values() if not v.endswith(".0"))
    assert failure.found == repr(float(before) + 1e-3)
    assert float(failure.expected) == pytest.approx(float(before), rel=1e-9, abs=1e-12)
    assert "expected" in failure.describe() and failure.found in failure.describe()


def test_a_changed_verdict_word_is_caught(run):
    path = run / "tables/editing_verdicts.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    decided = frame.index[frame.verdict.isin(["better", "worse"])][0]
    frame.loc[decided, "verdict"] = "equivalent"
    frame.to_csv(path, index=False)
    failures = _failures(recompute_tables(run, resamples=RESAMPLES))
    assert [(f.item.split(" | ")[-1], f.found) for f in failures] == [("verdict", "equivalent")]


def test_a_deleted_per_image_row_is_caught(run):
    path = run / "inversion/w_plus/metrics.csv"
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame[frame.image_id != "im3"].to_csv(path, index=False)
    rows = _failures(recompute_per_image_rows(run))
    assert [(f.subject, f.item, f.found) for f in rows] == [("inversion/w_plus/metrics.csv", "row im3", "0 rows")]
    tables = _failures(recompute_tables(run, resamples=RESAMPLES))
    assert any(f.subject == "tables/table1.csv" and f.item == "row W+ | n" and f.found == "6" for f in tables)
    assert any(f.subject == "tables/noninferiority.csv" for f in tables)


def test_a_swapped_recon_png_is_caught(run):
    recon = run / "inversion/f_z_plus/recon"
    (recon / "im0.png").rename(recon / "tmp.png")
    (recon / "im1.png").rename(recon / "im0.png")
    (recon / "tmp.png").rename(recon / "im1.png")
    failures = _failures(recompute_per_image_rows(run))
    assert {f.item for f in failures} == {f"row {i} | {m}" for i in ("im0", "im1") for m in ("mse", "ssim")}
    assert {f.subject for f in failures} == {"inversion/f_z_plus/metrics.csv"}
    assert all(f.difference > 1e-3 for f in failures)


def test_missing_inputs_and_unexplained_rows_fail_without_raising(run):
    (run / "edits/w_plus/identity.csv").unlink()
    (run / "tables/realism.csv").unlink()
    table1 = pd.read_csv(run / "tables/table1.csv", dtype=str, keep_default_na=False)
    pd.concat([table1, table1.iloc[:1].assign(space="S")]).to_csv(run / "tables/table1.csv", index=False)
    failures = _failures(recompute_tables(run, resamples=RESAMPLES))
    named = {(f.subject, f.item) for f in failures}
    assert ("edits/w_plus/identity.csv", "") in named
    assert ("tables/realism.csv", "") in named
    assert ("tables/table1.csv", "row S") in named
    assert ("tables/identity.csv", "row W+ / all") in named  # its rows are still in the table, not derivable now


def test_a_verdict_at_a_boundary_allows_both_words():
    row = dict(n=6, mean_improvement=0.02, p_value=0.01, equivalence_p_value=0.5)
    row |= dict(ci_low=Band(0.001, -0.001, 0.003, "band"), ci_high=Band(0.04, 0.03, 0.05, "band"))
    judged = _judged(row, margin=0.0, informative=True, alpha=0.05, sign_flip=True, sd=(0.01, 0.01, 0.01))
    assert isinstance(judged["verdict"], Words)
    assert judged["verdict"].allowed == ("better", "not resolved")
    assert "images_needed" not in judged  # its word may or may not be "not resolved": not checked
    row |= dict(ci_low=Band(0.002, 0.001, 0.003, "band"))
    assert _judged(row, margin=0.0, informative=True, alpha=0.05, sign_flip=True, sd=(0.01,) * 3)["verdict"] == "better"
