"""The Fig. 8 section (issue 28; config `fig8:`, benchmarks.pipeline.fig8, workflow/rules/fig8.smk): its config (the
main run's values where it names none, its own checks), its stages on a tiny random StyleGAN1 (one grid per component
of targets x spaces rows and target + alphas columns, one table row per space, the alpha = 0 edit is the inversion's
reconstruction), and the `paper` override config/overrides/paper-fig8.yaml planned with stand-ins of its assets in
their real formats (a genforce StyleGAN1 256 state dict, a folder of PNG photos), and refused while planning without
them, with the message that says how to provide them."""

from __future__ import annotations

import copy
import pathlib

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from test_pipeline import make_paper_mirror, planned_jobs

from benchmarks.metrics.identity import identity_similarity
from benchmarks.metrics.reconstruction import read_images
from benchmarks.pipeline.editing import identity_backend
from benchmarks.pipeline.fig8 import (
    GRID_CELL_INCHES,
    edit_stage,
    image_name,
    section_config,
    section_stage,
    summary_stage,
)
from benchmarks.pipeline.prepare import random_stand_in_generator
from benchmarks.report.figures import GRID_HEADER_INCHES, GRID_LABEL_INCHES
from conftest import snakemake
from fzplus.config import CONFIG_DIR, ConfigError, load_config
from fzplus.generator import load_generator, write_genforce_checkpoint
from fzplus.images import to_float
from fzplus.planning import generator_architecture
from fzplus.targets import read_prepared_targets

OVERRIDE = CONFIG_DIR / "overrides" / "paper-fig8.yaml"
CAT_ASSETS = ("genforce-stylegan1-lsun-cat-256", "lsun-cat-user")
SECTION_JOBS = {"fig8_generator": 1, "fig8_targets": 1, "fig8_directions": 2, "fig8_invert": 2, "fig8_edit": 2}
PHOTOS, SIDE = 2, 48  # square photos larger than ci's 32 px generator


def write_photos(folder: pathlib.Path, *, count: int = PHOTOS, side: int = SIDE) -> pathlib.Path:
    """`count` seeded noise photos as PNG, named cat0.png...: row labels "cat0 F/Z+" fit the grids' narrowest label
    column."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"cat{i}.png")
    return folder


def ci_with_photos(folder: pathlib.Path) -> dict:
    """The ci profile (its section: a random 32 px StyleGAN1) on a folder of photos, with fewer samples for the
    directions' fit and unit."""
    return load_config(
        "ci",
        overrides={
            "progress": False,
            "fig8.targets": {"asset": None, "folder": str(folder), "count": None},
            "fig8.ganspace": {"samples": 1000},
            "directions.unit.images": 8,
        },
    )


def test_the_section_takes_the_main_run_s_values_where_it_names_none():
    ci = load_config("ci")
    before = copy.deepcopy(ci)
    section = section_config(ci)
    assert ci == before and "fig8" not in section  # the run's config is untouched; the section's assets only
    assert section["generator"]["random"]["architecture"] == "stylegan1"
    assert section["targets"]["count"] == 2 and section["inversion"]["spaces"] == ["F/Z+", "F/W+"]
    assert section["inversion"]["batch_size"] == 2  # the section's override, the rest the main run's
    assert {k: v for k, v in section["inversion"].items() if k not in ("spaces", "batch_size")} == {
        k: v for k, v in ci["inversion"].items() if k not in ("spaces", "batch_size")
    }
    assert section["directions"]["families"] == ["ganspace"] and section["directions"]["ganspace"]["components"] == [1]
    assert section["directions"]["ganspace"]["samples"] == ci["directions"]["ganspace"]["samples"]
    assert section["editing"]["alphas"] == ci["editing"]["alphas"] and section["encoder"]["pretrained"] is None
    assert load_config("paper")["fig8"] is None  # no section (mini has one, on its StyleGAN1)
    paper = load_config("paper", overrides=yaml.safe_load(OVERRIDE.read_text()))
    cats = section_config(paper)
    assert cats["generator"]["asset"] == CAT_ASSETS[0] and cats["targets"]["asset"] == CAT_ASSETS[1]
    assert (cats["generator"]["truncation_psi"], cats["generator"]["truncation_cutoff"]) == (0.7, 8)
    assert cats["inversion"]["base_size"] == 16 and cats["inversion"]["steps"] == paper["inversion"]["steps"] == 1200
    assert cats["editing"]["alphas"] == paper["editing"]["alphas"]


def test_the_section_s_own_checks_name_every_problem():
    with pytest.raises(ConfigError) as error:
        load_config(
            "ci",
            overrides={
                "fig8.targets.folder": "cats",  # and the ci asset: two sources
                "fig8.spaces": ["F/Z+", "F/W+(P_N)", "PTI"],
                "fig8.inversion": {"steps": -1, "stepz": 3, "base_size": 4},
                "fig8.base_size": 32,
            },
        )
    message = str(error.value)
    for expected in (
        "fig8.targets: give exactly one of asset, folder",
        "fig8.spaces[1] = 'F/W+(P_N)' needs the P_N statistics",
        "fig8.spaces[2] = 'PTI' needs its pivot's inversion (W)",
        "fig8.inversion.steps must be >= 0",
        "unknown key 'fig8.inversion.stepz' (did you mean 'fig8.inversion.steps'?)",
        "fig8.inversion.base_size: set it as fig8.base_size",
        "fig8.base_size (32, null: inversion.base_size) must be smaller than fig8.generator.random.resolution (32)",
    ):
        assert expected in message, message


@pytest.fixture(scope="module")
def section_run(tmp_path_factory):
    """(config, results folder) of every stage of the section run in order, as its rules call them."""
    root = tmp_path_factory.mktemp("fig8")
    cfg, out = ci_with_photos(write_photos(root / "photos")), root / "fig8"
    generator = str(out / "generator.pt")
    section_stage(cfg, stage="prepare.build_generator", out_path=generator)
    section_stage(cfg, stage="prepare.prepare_targets_stage", generator_path=generator, out_dir=out / "targets")
    for domain in ("Z", "W"):  # W's unit is matched to Z's image move (directions.unit.rule)
        section_stage(
            cfg,
            stage="prepare.directions_stage",
            family="ganspace",
            domain=domain,
            generator_path=generator,
            out_path=out / "directions" / f"ganspace_{domain}.npz",
            reference_path=out / "directions" / "ganspace_Z.npz" if domain == "W" else None,
        )
    slugs = {"F/Z+": ("f_z_plus", "Z"), "F/W+": ("f_w_plus", "W")}
    for name, (slug, domain) in slugs.items():
        section_stage(
            cfg,
            stage="evaluate.invert_stage",
            space_name=name,
            generator_path=generator,
            targets_dir=out / "targets",
            out_dir=out / "inversion" / slug,
        )
        edit_stage(
            cfg,
            space_name=name,
            generator_path=generator,
            codes_path=out / "inversion" / slug / "codes.pt",
            directions_path=out / "directions" / f"ganspace_{domain}.npz",
            out_dir=out / "edits" / slug,
            targets_dir=out / "targets",
        )
    summary_stage(
        cfg,
        targets_dir=out / "targets",
        inversion_dirs={name: out / "inversion" / slug for name, (slug, _) in slugs.items()},
        edits_dirs={name: out / "edits" / slug for name, (slug, _) in slugs.items()},
        out_dir=out,
    )
    return cfg, out


@pytest.mark.slow
def test_the_section_inverts_edits_and_draws_a_tiny_stylegan1(section_run):
    cfg, out = section_run
    alphas, names = cfg["editing"]["alphas"], cfg["fig8"]["spaces"]
    assert load_generator(out / "generator.pt").architecture == "stylegan1"
    # the table: one row per space, Table 1's columns (from the invert stage's metrics) and the edit strength
    table = pd.read_csv(out / "table.csv")
    assert list(table.space) == names and (table.n == PHOTOS).all() and (table.steps_mean > 0).all()
    sizes = sorted({abs(a) for a in alphas} - {0.0})
    strength = [f"edit_{metric}_at_{size:g}" for size in sizes for metric in ("mse", "perceptual")]
    identity = [f"identity_at_{size:g}" for size in [0.0, *sizes]]  # fig8.identity is on in ci
    ordered = ["identity_at_0", *(c for size in sizes for c in strength + identity if c.endswith(f"_{size:g}"))]
    assert list(table.columns[-len(ordered) :]) == ordered and table[identity].notna().all().all()
    assert (table[strength] > 0).all().all()
    # one grid per component: a row per target and space, the target and then every alpha as columns (benchmarks.
    # report.figures: fixed inches, the label column at its narrowest for labels like "cat0 F/Z+")
    (grid,) = sorted((out / "grids").glob("*.png"))
    assert grid.name == "pc1.png"
    rows, columns, dpi = PHOTOS * len(names), 1 + len(alphas), cfg["report"]["dpi"]
    with Image.open(grid) as image:
        assert image.size == (
            round((GRID_LABEL_INCHES + columns * GRID_CELL_INCHES) * dpi),
            round((GRID_HEADER_INCHES + rows * GRID_CELL_INCHES) * dpi),
        )
    # the alpha = 0 edit is the inversion's reconstruction, pixel for pixel, and scores no change
    for slug in ("f_z_plus", "f_w_plus"):
        edits = pd.read_csv(out / "edits" / slug / "edits.csv", dtype={"image_id": str})
        assert (
            len(edits) == PHOTOS * len(alphas)
            and (edits[edits.alpha == 0][["change_perceptual", "change_mse"]] == 0).all().all()
        )
        for image_id in ("cat0", "cat1"):
            edited = read_images([out / "edits" / slug / "images" / "pc1" / image_name(image_id, 0.0)])
            assert np.array_equal(edited, read_images([out / "inversion" / slug / "recon" / f"{image_id}.png"]))
        # fig8.identity (on in ci): each edit's similarity to its target; at alpha 0, the reconstruction's
        target_ids, targets = read_prepared_targets(out / "targets")
        recons = to_float(read_images([out / "inversion" / slug / "recon" / f"{i}.png" for i in target_ids]))
        expected = identity_similarity(identity_backend(section_config(cfg)), targets, recons)["similarity"]
        unedited = edits[edits.alpha == 0].set_index("image_id").loc[target_ids, "identity"]
        assert np.allclose(unedited.to_numpy(), expected.to_numpy(), atol=1e-6) and edits.identity.notna().all()


def stand_in_mirror(root: pathlib.Path, real_mirror: pathlib.Path, *, cats: bool = True) -> pathlib.Path:
    """The paper profile's stand-ins (tests/test_pipeline.py) and, with `cats`, the Fig. 8 override's in their real
    formats: a random StyleGAN1 256 as genforce's state dict, three PNG photos."""
    make_paper_mirror(root, real_mirror)
    if cats:
        spec = dict(
            architecture="stylegan1", resolution=256, seed=0, channel_base=1024, channel_max=16, mapping_layers=1
        )
        (root / CAT_ASSETS[0]).mkdir()
        write_genforce_checkpoint(random_stand_in_generator(spec), root / CAT_ASSETS[0] / "stylegan_cat256.pth")
        write_photos(root / CAT_ASSETS[1], count=3, side=256)
    return root


def plan_paper_fig8(workdir: pathlib.Path, mirror: pathlib.Path, *extra: str):
    return snakemake(
        workdir,
        "-n",
        "--cores",
        "1",
        "--configfile",
        str(OVERRIDE),
        "--config",
        "profile=paper",
        "allow_download=False",
        *extra,
        env={"FZPLUS_ASSET_MIRROR": str(mirror)},
    )


@pytest.mark.slow
def test_the_paper_fig8_override_plans_the_section_with_stand_in_assets(tmp_path, mirror, monkeypatch):
    stand_ins = stand_in_mirror(tmp_path / "mirror", mirror)
    result = plan_paper_fig8(tmp_path, stand_ins)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = planned_jobs(result.stdout)
    assert {job: plan.get(job) for job in SECTION_JOBS} == SECTION_JOBS and plan["fig8_summary"] == 1
    assert plan["report"] == 1 and "fig8_encoder" not in plan  # no encoder for this generator: the mean feature map
    # planning read the stand-in's architecture from the genforce file (and so checked fig8.spaces against it)
    monkeypatch.setenv("FZPLUS_ASSET_MIRROR", str(stand_ins))
    config = load_config("paper", overrides=yaml.safe_load(OVERRIDE.read_text()))
    assert generator_architecture(config, section="fig8.generator") == "stylegan1"


@pytest.mark.slow
def test_the_paper_fig8_override_is_refused_while_planning_without_its_assets(tmp_path, mirror):
    stand_ins = stand_in_mirror(tmp_path / "mirror", mirror, cats=False)
    result = plan_paper_fig8(tmp_path, stand_ins)
    message = result.stdout + result.stderr
    assert result.returncode != 0 and "missing assets" in message and "Provide it" in message
    assert all(name in message for name in CAT_ASSETS) and "genforce/genforce" in message
    assert "nvidia-stylegan2-ffhq-1024" not in message  # the main run's stand-ins are there
    # by path: named, with where it was expected and how to point the config at it
    result = plan_paper_fig8(
        tmp_path,
        stand_ins,
        "fig8={generator: {asset: null, checkpoint: no/stylegan_cat256.pth}, targets: {asset: null, folder: no/cats}}",
    )
    message = result.stdout + result.stderr
    assert result.returncode != 0 and "fig8.generator.checkpoint = 'no/stylegan_cat256.pth' is missing" in message
    assert "fig8.targets.folder = 'no/cats' is missing" in message and "set fig8: null" in message
