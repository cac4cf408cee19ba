"""Provenance: valid JSON with the config, seeds, assets, git revision, package versions and device."""

from __future__ import annotations

import json
import pathlib
import platform
import subprocess

import numpy as np
import pytest
import torch

from fzplus.assets import REPO_ROOT
from fzplus.config import load_config
from fzplus.provenance import collect_provenance, config_seeds, git_state, package_versions, write_provenance

ASSETS = {"toy": {"path": "resources/toy", "verified": True, "files": {"a.bin": "0" * 64}}}


def head_revision() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def test_written_file_is_valid_json_with_everything(tmp_path):
    config = load_config("ci")
    path = write_provenance(
        tmp_path / "sub" / "provenance.json",
        config,
        asset_hashes=ASSETS,
        seeds=config_seeds(config),
        extra={"rule": "report", "n_images": np.int64(4)},
    )
    record = json.loads(path.read_text())
    assert record["config"] == json.loads(json.dumps(config))
    assert record["seeds"] == {"seed": 0, "targets.seed": 0, "generator.random.seed": 0}
    assert record["assets"] == ASSETS
    assert record["extra"] == {"rule": "report", "n_images": 4}
    assert record["packages"]["torch"] == torch.__version__
    assert record["packages"]["numpy"] == np.__version__
    assert record["python"]["version"].startswith(platform.python_version())
    assert record["device"]["torch_threads"] == torch.get_num_threads() and record["device"]["cpu_model"]
    assert record["timestamps"]["collected_utc"].endswith("+00:00")
    revision = head_revision()
    if revision is None:
        pytest.skip("not a git checkout")
    assert record["git"]["revision"] == revision and len(revision) == 40
    assert isinstance(record["git"]["dirty"], bool)


def test_git_state_outside_a_checkout(tmp_path):
    state = git_state(tmp_path)
    assert state["revision"] is None and state["dirty"] is None and str(tmp_path) in state["error"]


def test_dirty_flag_follows_the_work_tree(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git unavailable")
    (repo / "f.txt").write_text("1")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    clean = git_state(repo)
    assert clean["dirty"] is False and len(clean["revision"]) == 40
    (repo / "f.txt").write_text("2")
    dirty = git_state(repo)
    assert dirty["dirty"] is True and dirty["changes"] == [" M f.txt"] and dirty["revision"] == clean["revision"]


def test_non_finite_numbers_become_null_and_odd_objects_are_refused():
    record = collect_provenance(
        {"x": 1},
        asset_hashes={},
        seeds={},
        extra={"nan": float("nan"), "path": pathlib.Path("a/b"), "t": torch.tensor(2.5), "set": {3, 1}},
    )
    assert record["extra"] == {"nan": None, "path": "a/b", "t": 2.5, "set": [1, 3]}
    json.dumps(record, allow_nan=False)  # strict JSON
    with pytest.raises(TypeError, match="cannot store object values as JSON"):
        collect_provenance({"x": object()}, asset_hashes={}, seeds={})


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = write_provenance(tmp_path / "provenance.json", {"run": 1}, asset_hashes={}, seeds={})
    before = path.read_text()
    with pytest.raises(TypeError):
        write_provenance(path, {"run": 2}, asset_hashes={}, seeds={}, extra={"bad": object()})
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["provenance.json"]


def test_missing_package_is_null():
    versions = package_versions(["torch", "surely-not-installed-fzplus"])
    assert versions["torch"] == torch.__version__ and versions["surely-not-installed-fzplus"] is None
