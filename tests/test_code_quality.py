"""The maintainers' checks, run with the tests (and so by .ci/run): ruff's lint and format (pyproject.toml,
[tool.ruff]) and the layer contract of .importlinter (the data flow points one way, the library never imports
the benchmark, no import circle between sibling modules)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from fzplus.assets import REPO_ROOT

BIN = pathlib.Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing_and_the_code_is_formatted():
    result = run("ruff", "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_layer_contract_holds():
    result = run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout
