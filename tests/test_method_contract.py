"""The plugin contract: a method with its own settings section and a second stage is one file in spaces/,
each default lives once, and no plugin capability is probed outside spaces/base.py.

The one-file test copies the repository, drops in a toy method ("W+, then N more Adam steps at another
learning rate", with the settings section inversion.extra_steps) and edits nothing else: the config validates
the new section (fills its defaults, refuses a misspelt key), and the default ci run plans the method, runs it
and writes its rows in Table 1 and the editing tables."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import spaces
from conftest import snakemake
from fzplus.assets import REPO_ROOT, asset_mirror
from fzplus.config import load_schema
from fzplus.encoders import KINDS as ENCODER_KINDS
from fzplus.encoders.base_code_training import train_encoder
from fzplus.encoders.domain_training import train_domain_encoder
from fzplus.inversion import invert
from fzplus.inversion.settings import PAPER, InversionSettings
from fzplus.settings import schema_of

TOY_METHOD = '''\
"""A toy method for tests: the W+ inversion, then `steps` more Adam steps at learning rate `lr` (a second stage)."""
from dataclasses import dataclass

from fzplus.optimiser import LearningRate, descend
from fzplus.settings import setting

from ._families import WSpace


@dataclass(frozen=True)
class ExtraSteps:
    """the toy method's second stage"""

    steps: int = setting(2, minimum=0, description="Adam steps after the W+ inversion")
    lr: float = setting(0.05, exclusiveMinimum=0)


class ExtraStepsSpace(WSpace):
    settings_key, settings_class = "extra_steps", ExtraSteps

    def refine(self, codes, ctx, *, image_losses, settings=None, progress=False, desc=""):
        s = self.settings_for(settings if settings is not None else ctx.settings)
        w = codes["w"].clone().requires_grad_(True)

        def loss(view, idx):
            mse, per = image_losses(self.render({**codes, "w": view["w"]}, ctx), idx)
            return dict(total=mse + per, mse=mse, perceptual=per)

        descent = descend({"w": w}, loss, cap=s.steps, lr=LearningRate(peak=s.lr))
        return {**codes, "w": w.detach()}, descent

    def second_stage_cap(self, settings, generator):
        return self.settings_for(settings).steps


SPACE = ExtraStepsSpace(name="W+ extra steps", slug="w_plus_extra_steps", per_layer=True, uses_base_code=False,
                        description="W+, then more Adam steps at another learning rate (a toy method)")
'''


def copy_repository(dest: pathlib.Path) -> pathlib.Path:
    """The tracked files of the repository (the committed mini models aside: the ci profile does not read them)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if name.startswith("models/") or not (REPO_ROOT / name).is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    return dest


def run_python(repo: pathlib.Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo), "FZPLUS_ASSET_MIRROR": str(asset_mirror())}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=repo, capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def repo_with_toy(tmp_path_factory) -> pathlib.Path:
    repo = copy_repository(tmp_path_factory.mktemp("repo"))
    (repo / "spaces" / "w_plus_extra_steps.py").write_text(TOY_METHOD)
    return repo


def test_a_new_method_file_brings_its_validated_settings_section(repo_with_toy):
    result = run_python(
        repo_with_toy,
        """
        import json, os, spaces
        from fzplus.config import ConfigError, load_config
        assert spaces.__file__.startswith(os.environ["PYTHONPATH"]), spaces.__file__
        cfg = load_config("ci")
        changed = load_config("ci", overrides={"inversion.extra_steps.steps": 5})["inversion"]["extra_steps"]
        print(
            json.dumps(
                {"spaces": cfg["inversion"]["spaces"], "section": cfg["inversion"]["extra_steps"], "set": changed}
            )
        )
        for bad in ({"inversion.extra_steps.stpes": 3}, {"inversion.extra_steps.lr": 0}):
            try:
                load_config("ci", overrides=bad)
            except ConfigError as error:
                print(str(error).replace("\\n", " "))
            else:
                raise SystemExit(f"accepted {bad}")
    """,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, misspelt, bound = result.stdout.strip().split("\n")
    parsed = json.loads(first)
    assert "W+ extra steps" in parsed["spaces"]
    assert parsed["section"] == {"steps": 2, "lr": 0.05} and parsed["set"] == {"steps": 5, "lr": 0.05}
    assert (
        "unknown key 'inversion.extra_steps.stpes'" in misspelt
        and "did you mean 'inversion.extra_steps.steps'" in misspelt
    )
    assert "inversion.extra_steps.lr must be > 0" in bound


@pytest.mark.slow
def test_the_default_ci_run_plans_runs_and_tables_a_new_method_file(repo_with_toy, ci_run, tmp_path):
    # Start from the finished ci run (same config, same code but the new file), so that only what the new
    # method adds or changes runs: its inversions and edits, then every table, figure and the report.
    ci_workdir, _ = ci_run
    workdir = tmp_path / "run"
    shutil.copytree(ci_workdir / "results", workdir / "results", copy_function=shutil.copy2)
    if (ci_workdir / ".snakemake" / "metadata").is_dir():
        shutil.copytree(
            ci_workdir / ".snakemake" / "metadata", workdir / ".snakemake" / "metadata", copy_function=shutil.copy2
        )
    env = {"PYTHONPATH": str(repo_with_toy), "FZPLUS_ASSET_MIRROR": str(asset_mirror())}
    run_ci = ("--cores", "2", "--config", "profile=ci")
    plan = snakemake(workdir, *run_ci, "--dry-run", env=env, timeout=600, repo=repo_with_toy)
    assert plan.returncode == 0, plan.stderr[-3000:]
    for job in ("invert", "invert_ground_truth", "edit", "tables", "editing_tables", "report"):
        assert re.search(rf"^{job}\s+\d+", plan.stdout, re.M), f"{job} not planned:\n{plan.stdout[-3000:]}"
    run = snakemake(workdir, *run_ci, env=env, repo=repo_with_toy)
    assert run.returncode == 0, run.stderr[-4000:]
    results = workdir / "results" / "ci"
    table1 = pd.read_csv(results / "tables" / "table1.csv")
    row = table1[table1.space == "W+ extra steps"]
    assert len(row) == 1 and row[["mse_mean", "ssim_mean", "perceptual_mean"]].notna().all(axis=None)
    losses = pd.read_csv(results / "inversion" / "w_plus_extra_steps" / "losses.csv")
    assert losses.groupby("image_id").size().eq(3 + 2).all()  # the ci profile's 3 steps, then the 2 of its second stage
    per_image = pd.read_csv(results / "tables" / "editing_per_image.csv")
    fidelity = pd.read_csv(results / "tables" / "edit_fidelity.csv")
    assert (per_image.space == "W+ extra steps").any() and (fidelity.space == "W+ extra steps").any()
    assert "W+ extra steps" in (results / "report.html").read_text()


def test_each_settings_section_is_generated_from_its_class():
    schema = load_schema()
    inversion = schema["properties"]["inversion"]["properties"]
    for name, prop in schema_of(InversionSettings)["properties"].items():
        assert inversion[name] == prop
    owners = {s.settings_key: s.settings_class for s in map(spaces.get, spaces.names()) if s.settings_key}
    assert {"pn", "idinvert", "tuning", "sam"} <= set(owners)
    for key, cls in owners.items():
        section = inversion[key]
        assert section == schema_of(cls)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        assert {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in {k: p["default"] for k, p in section["properties"].items()}.items()
        } == defaults
    for kind in ENCODER_KINDS.values():
        assert schema["properties"][kind.section] == schema_of(kind.recipe)


def test_library_defaults_are_read_from_the_settings_classes():
    engine = inspect.signature(invert).parameters
    for field in dataclasses.fields(InversionSettings):
        assert engine[field.name].default == getattr(PAPER, field.name), field.name
    for train, recipe in (
        (train_encoder, ENCODER_KINDS["base-code"].recipe()),
        (train_domain_encoder, ENCODER_KINDS["w-plus"].recipe()),
    ):
        parameters = inspect.signature(train).parameters
        shared = [f.name for f in dataclasses.fields(recipe) if f.name in parameters and f.name != "steps"]
        assert len(shared) >= 6
        for name in shared:
            assert parameters[name].default == getattr(recipe, name), (train.__name__, name)


def test_a_yaml_section_that_repeats_a_generated_one_is_refused(monkeypatch, tmp_path):
    import yaml

    import fzplus.config as config

    schema = yaml.safe_load(config.SCHEMA_PATH.read_text())
    schema["properties"]["inversion"]["properties"]["tuning"] = {"type": "object", "default": {}}
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema))
    monkeypatch.setattr(config, "SCHEMA_PATH", path)
    with pytest.raises(config.ConfigError, match="writes inversion.tuning, which is generated"):
        config.load_schema()


def test_malformed_method_declarations_are_refused_at_registration():
    from spaces._families import WSpace
    from spaces.base import RegistrationError, validate_space

    def plugin(**fields):
        declared = type("Declared", (WSpace,), fields)  # the declarations as class fields, as a plugin writes them
        return declared(name="X", slug="x", per_layer=True, uses_base_code=False, description="x")

    @dataclasses.dataclass(frozen=True)
    class NoDefault:
        steps: int

    cases = [
        (dict(settings_key="x"), "set both settings_key"),
        (dict(settings_key="x", settings_class=NoDefault), "has no default"),
        (dict(encoder_kind="pixels"), "encoder_kind 'pixels'"),
        (dict(figures=("heatmap",)), "figure 'heatmap'"),
        (dict(figures=("latent_maps",)), "needs the plugin to implement \\['candidate_names'\\]"),
        (dict(refined_variables=("delta",)), "implements no refine"),
        (dict(refine=lambda self, codes, ctx, **kw: (codes, None)), "not second_stage_cap"),
    ]
    for fields, message in cases:
        with pytest.raises(RegistrationError, match=message):
            validate_space(plugin(**fields), source="test")


def test_no_plugin_capability_is_probed_outside_the_contract():
    probe = re.compile(r"\b(getattr|hasattr)\(\s*(space|pivot|plugin|s)\b")
    sources = [
        *REPO_ROOT.glob("fzplus/**/*.py"),
        *REPO_ROOT.glob("benchmarks/**/*.py"),
        *REPO_ROOT.glob("spaces/*.py"),
        *REPO_ROOT.glob("workflow/**/*.smk"),
        *REPO_ROOT.glob("workflow/**/*.py"),
        REPO_ROOT / "workflow" / "Snakefile",
    ]
    found = [
        f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}"
        for path in sources
        if path.name != "base.py" or path.parent.name != "spaces"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert not found, "plugins probed outside spaces/base.py:\n" + "\n".join(found)
