"""The Snakemake pipeline end to end on the `ci` profile, its incremental behaviour, and planning of the
`paper` profile with stand-in assets (and its clear stop without them)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

import spaces
from conftest import snakemake

pytestmark = pytest.mark.slow


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Job counts of a dry run's 'Job stats' table (empty when nothing is to be done)."""
    stats = dry_run_output.split("Job stats:")[1].split("total")[0] if "Job stats:" in dry_run_output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}


def test_ci_profile_produces_every_output(ci_run):
    _, out = ci_run
    names = spaces.names()
    table1 = pd.read_csv(out / "tables" / "table1.csv")
    # every space, and each method on a pivot's pivot run for the method's whole budget (budget_matched_pivots)
    methods = [spaces.get(name) for name in names if spaces.get(name).pivot is not None]
    budget_rows = [spaces.budget_matched_name(method) for method in methods]
    assert sorted(table1["space"]) == sorted([*names, *budget_rows]) and (table1["n"] == 4).all()
    rows = table1.set_index("space")
    for method in methods:  # a method costs its pivot's steps and its own; the budget row may stop on its plateau
        assert rows.loc[method.name, "steps_mean"] > rows.loc[method.pivot.name, "steps_mean"]
        assert rows.loc[spaces.budget_matched_name(method), "steps_max"] >= rows.loc[method.pivot.name, "steps_max"]
    for name in names:
        slug = spaces.get(name).slug
        metrics = pd.read_csv(out / "inversion" / slug / "metrics.csv", dtype={"image_id": str})
        assert len(metrics) == 4 and metrics[["mse", "ssim", "perceptual"]].notna().all().all()
        assert len(list((out / "inversion" / slug / "recon").glob("*.png"))) == 4
        identity = pd.read_csv(out / "edits" / slug / "identity.csv")
        assert set(identity["family"]) == {"random", "ganspace", "interfacegan"}
    directions = pd.read_csv(out / "tables" / "directions.csv")
    # ci: InterFaceGAN's released Z boundaries, and SVMs fitted in W on their decision values
    assert set(directions["method"]) == {"random", "ganspace", "interfacegan", "interfacegan-released"}
    assert set(directions["domain"]) == {"Z", "W"}
    assert directions.loc[directions.method == "interfacegan", "validation_accuracy"].between(0, 1).all()
    ni = pd.read_csv(out / "tables" / "noninferiority.csv")
    assert set(ni["metric"]) == {"mse", "ssim"} and ni["p_value"].between(0, 1).all()
    # editing metrics: every space's fidelity on the 2 in-domain targets (alpha 0 = its reconstruction), KID
    # features of the edits, and a verdict per metric from the closed vocabulary
    for name in names:
        fidelity = pd.read_csv(out / "edits" / spaces.get(name).slug / "fidelity.csv")
        assert fidelity.image_id.nunique() == 2 and set(fidelity.alpha) == {-2.0, 0.0, 2.0} and fidelity.mse.ge(0).all()
    verdicts = pd.read_csv(out / "tables" / "editing_verdicts.csv")
    assert {"identity", "fidelity_perceptual", "fidelity_mse", "realism_kid"} <= set(verdicts.metric)
    # identity on the in-domain targets too: its sweep per space, its own references, a verdict row per pair
    for name in names:
        in_domain = pd.read_csv(out / "edits" / spaces.get(name).slug / "identity_in_domain.csv")
        assert in_domain.image_id.nunique() == 2 and set(in_domain.alpha) == {-2.0, 0.0, 2.0}
    pairs = {tuple(p) for p in verdicts[verdicts.metric == "identity_in_domain"][["candidate", "reference"]].values}
    assert pairs == {("F/Z+", "F/W+(P_N)"), ("PTI w/ Z+", "PTI"), ("SAM w/ Z+", "SAM")}
    baselines = pd.read_csv(out / "tables" / "editing_baselines.csv")
    assert {"jpeg", "mirror", "other", "gray", "blur"} <= set(
        baselines[baselines.metric == "identity_in_domain"].reference
    )
    assert set(verdicts.verdict) <= {"better", "worse", "equivalent", "not resolved", "uninformative"}
    assert (verdicts.ci_low <= verdicts.ci_high).all()
    informative = pd.read_csv(out / "tables" / "editing_informative.csv")
    assert set(informative.space) == set(names) and informative.reason.notna().all()
    for figure in ("identity_vs_step.png", "reconstructions.png", "loss_curves.png", "editing_metrics.png"):
        assert (out / "figures" / figure).stat().st_size > 1000
    # the tuning methods: the Fig. 9 table beside their pivots, float16 tuned weights for each image
    tuning = pd.read_csv(out / "tables" / "tuning.csv", dtype={"image_id": str})
    beside_pivots = (
        "W",
        "W (budget of PTI)",
        "PTI",
        "Z+",
        "Z+ (budget of PTI w/ Z+)",
        "PTI w/ Z+",
        "W+",
        "W+ (budget of SAM)",
        "SAM",
        "Z+ (budget of SAM w/ Z+)",
        "SAM w/ Z+",
    )  # each pivot once, before its first method; its run for the method's whole budget right before the method
    columns = [f"{s} {m}" for s in beside_pivots for m in ("MSE", "perceptual", "steps")]
    assert list(tuning.columns) == ["image_id", *columns]
    assert list(tuning.image_id)[-1] == "mean" and len(tuning) == 5 and tuning.notna().all().all()
    codes = torch.load(out / "inversion" / "pti" / "codes.pt", weights_only=True)
    assert len(codes) == 4 and all(
        c["delta"].dtype == torch.float16 and c["delta"].abs().max() > 0 for c in codes.values()
    )
    pivot = torch.load(out / "inversion" / "w" / "codes.pt", weights_only=True)  # the W job's codes, reused
    assert all(torch.equal(codes[i]["w"], pivot[i]["w"]) for i in codes)
    # SAM: a latent chosen per pixel among the residuals (8, 16 px) and the pivot, its map drawn for the report
    for slug in ("sam", "sam_z_plus"):
        codes = torch.load(out / "inversion" / slug / "codes.pt", weights_only=True)
        assert all(
            c["residual_sizes"].tolist() == [[8, 16]] and int(c["latent_map"].max()) <= 2 for c in codes.values()
        )
        assert (out / "figures" / f"latent_maps_{slug}.png").stat().st_size > 1000
    report = (out / "report.html").read_text()
    assert "Methods on a pivot" in report
    # the Fig. 8 section on ci's random StyleGAN1 (config fig8): a table row per space, a grid, the report's section
    fig8 = pd.read_csv(out / "fig8" / "table.csv")
    assert list(fig8.space) == ["F/Z+", "F/W+"] and (fig8.n == 2).all() and (fig8.edit_perceptual_at_2 > 0).all()
    assert (out / "fig8" / "grids" / "pc1.png").stat().st_size > 1000 and "<h2>Fig. 8" in report
    assert (
        "F/Z+" in report
        and "data:image/png;base64," in report
        and "validation_accuracy" in report
        and "Editing: verdicts" in report
    )
    # the first screen says what was run, as provenance records it, and that the run audited itself
    provenance = json.loads((out / "provenance.json").read_text())
    first_screen = report[: report.index("Findings per configured pair")]
    assert provenance["extra"]["generator"]["sha256"] in first_screen
    assert provenance["git"]["revision"] and provenance["git"]["revision"] in first_screen
    assert "not computed" not in first_screen and "Audit:" in first_screen


def test_alpha_zero_edit_matches_the_inversion(ci_run):
    """The editing sweep at alpha = 0 renders the inversion itself: identity equals that of the recon."""
    _, out = ci_run
    identity = pd.read_csv(out / "edits" / "f_z_plus" / "identity.csv")
    at_zero = identity[identity["alpha"] == 0.0].groupby("image_id")["similarity"]
    assert (at_zero.max() - at_zero.min()).max() < 1e-6  # every direction gives the same image at alpha 0


def planned_slugs(dry_run_output: str, rule: str) -> set[str]:
    """The `slug` wildcards of a dry run's planned jobs of one rule."""
    return set(
        re.findall(rf"^(?:local)?rule {rule}:\n(?:[ \t]+.*\n)*?[ \t]+wildcards: slug=(\w+)", dry_run_output, flags=re.M)
    )


def test_a_changed_setting_reruns_exactly_the_rules_that_read_it(ci_run):
    """Every rule declares the config values its stage reads as params (Snakemake's `params` rerun trigger).
    Runs before the test below, which leaves the run incomplete."""
    workdir, _ = ci_run

    def dry_run(*overrides: str) -> tuple[dict[str, int], str]:
        result = snakemake(workdir, "-n", "--config", "profile=ci", *overrides)
        assert result.returncode == 0, result.stderr[-3000:]
        return planned_jobs(result.stdout), result.stdout

    f_spaces = {spaces.get(name).slug for name in spaces.names() if spaces.get(name).uses_base_code}
    plan, text = dry_run("encoder={steps: 5}")
    assert plan.get("encoder") == 1 and planned_slugs(text, "invert") == f_spaces and "z" not in f_spaces, text[-3000:]
    assert planned_slugs(text, "edit") == f_spaces and {"tables", "figures", "report"} <= set(plan)
    assert not {"generator", "targets", "pn_stats", "directions", "attribute_samples"} & set(plan)
    plan, text = dry_run("inversion={tuning: {steps: 2}}")  # read by the tuning methods only
    assert planned_slugs(text, "invert") == {"pti", "pti_z_plus"}, text[-3000:]
    plan, _ = dry_run("report={title: another title}")
    # provenance records the whole config; the run's own audit reads it, and the manifest lists every file
    assert set(plan) - {"all"} == {"provenance", "self_audit", "report", "manifest"}
    assert dry_run("threads=1")[0] == {} and dry_run("audit={deep: 2}")[0] == {}  # the audit target's own key


def test_second_run_does_nothing_and_a_deleted_space_reruns_only_its_dependants(ci_run):
    workdir, out = ci_run
    again = snakemake(workdir, "-n", "--config", "profile=ci")
    assert again.returncode == 0 and planned_jobs(again.stdout) == {}, again.stdout[-2000:]
    deleted = [out / "inversion" / "f_z_plus" / name for name in ("metrics.csv", "codes.pt")]
    kept = workdir / "kept"  # the session's run is shared (tests/test_audit.py audits it): put the files back after
    kept.mkdir(exist_ok=True)
    for path in deleted:
        shutil.copy2(path, kept / path.name)
        path.unlink()
    try:
        plan = planned_jobs(snakemake(workdir, "-n", "--config", "profile=ci").stdout)
        assert plan.get("invert") == 1 and plan.get("edit") == 1
        assert not {"generator", "targets", "encoder", "pn_stats", "directions"} & set(plan)
    finally:
        for path in deleted:
            shutil.copy2(kept / path.name, path)  # copy2: the old dates, so nothing downstream looks stale


NEW_SPACE = '''"""A space added by dropping one file into spaces/."""
from ._families import WSpace

SPACE = WSpace(name="Dropped-in", slug="dropped_in", per_layer=True, uses_base_code=False, description="test plugin")
'''


def test_a_new_plugin_file_is_compared_by_the_default_run_with_nothing_else_edited(tmp_path):
    """inversion.spaces defaults to every registered plugin: in a copy of the repository with one file added
    to spaces/, the run plans that space's inversion and edits, and the tables that read them."""
    from fzplus.assets import REPO_ROOT

    copy = tmp_path / "repo"
    shutil.copytree(
        REPO_ROOT,
        copy,
        ignore=shutil.ignore_patterns(".git", ".venv", "results", "resources", ".snakemake", "__pycache__"),
    )
    (copy / "spaces" / "dropped_in.py").write_text(NEW_SPACE)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(copy / "Snakefile"),
        "--directory",
        str(copy),
        "-n",
        "--cores",
        "1",
        "--config",
        "profile=ci",
    ]
    # the copy's packages, not the checkout's (where the file was not added): `python -m` puts the working
    # directory first on sys.path, then PYTHONPATH, both before the editable install
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)}, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dropped_in" in planned_slugs(result.stdout, "invert") and "dropped_in" in planned_slugs(
        result.stdout, "edit"
    )
    tables_job = re.search(r"^rule tables:\n(?:[ \t]+.*\n)*?[ \t]+input: (.*)$", result.stdout, flags=re.M).group(1)
    assert "inversion/dropped_in/metrics.csv" in tables_job


def make_paper_mirror(root: pathlib.Path, real_mirror: pathlib.Path) -> pathlib.Path:
    """Stand-in files under the paper profile's asset names (planning checks presence, not contents)."""
    files = {
        "nvidia-stylegan2-ffhq-1024/stylegan2-ffhq-1024x1024.pkl": b"stand-in",
        "lpips-vgg16/vgg16-397923af.pth": b"stand-in",
        "facenet-vggface2/20180402-114759-vggface2.pt": b"stand-in",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "celebahq-user").mkdir()
    for jpg in sorted((real_mirror / "celebahq-stargan-v2").glob("*.jpg"))[:3]:
        shutil.copy(jpg, root / "celebahq-user" / jpg.name)
    shutil.copytree(real_mirror / "interfacegan-stylegan2-ffhq-z", root / "interfacegan-stylegan2-ffhq-z")
    return root


def test_paper_profile_plans_every_job_with_its_assets(tmp_path, mirror):
    stand_ins = make_paper_mirror(tmp_path / "mirror", mirror)
    result = snakemake(
        tmp_path, "-n", "--cores", "1", "--config", "profile=paper", env={"FZPLUS_ASSET_MIRROR": str(stand_ins)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    plan = planned_jobs(result.stdout)
    count = len(spaces.names())  # every registered plugin
    assert plan["invert"] == count and plan["edit"] == count and plan["directions"] == 6 and plan["report"] == 1


def test_paper_profile_stops_with_a_clear_message_without_its_assets(tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    result = snakemake(
        tmp_path,
        "-n",
        "--cores",
        "1",
        "--config",
        "profile=paper",
        "allow_download=False",
        env={"FZPLUS_ASSET_MIRROR": str(empty)},
    )
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "missing assets" in message and "celebahq-user" in message and "nvidia-stylegan2-ffhq-1024" in message
    assert "Provide it" in message
