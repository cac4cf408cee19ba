"""The pipeline through Snakemake's real SLURM executor, on a one-node cluster of this machine
(tools/local_slurm.sh, workflow/profiles/slurm-local): the ci profile's tables must equal a local run's.

The whole ci profile through SLURM took 15 min here against 5 min locally (the executor's status polling,
and group jobs that run their rules one at a time), too long for CI. So the test starts from a copy of the
local run with one space's outputs (its inversion, in-domain inversion and edits) and every table deleted,
and has the cluster make the tables again: three rules of the spaces group and the two table rules of the
report group, as separate SLURM jobs. Every table must be byte-identical to the local run's.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import snakemake
from fzplus.assets import REPO_ROOT

CLUSTER = REPO_ROOT / "tools" / "local_slurm.sh"
PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm-local"
pytestmark = pytest.mark.slow


def cluster(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER), command], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def slurm():
    """A running local cluster; stopped afterwards only if this fixture started it."""
    was_running = cluster("status").returncode == 0
    if not was_running:
        started = cluster("start")
        if started.returncode != 0:
            reason = f"no local SLURM cluster: {started.stderr.strip() or started.stdout.strip()}"
            if os.environ.get("FZPLUS_REQUIRE_SLURM") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
    yield
    if not was_running:
        cluster("stop")


def test_ci_profile_through_slurm_gives_the_local_runs_tables(slurm, ci_run, tmp_path):
    local_workdir, local = ci_run
    workdir = tmp_path / "ci"
    shutil.copytree(
        local_workdir, workdir, symlinks=True
    )  # copy2: modification times kept, so nothing else is outdated
    remote = workdir / "results" / "ci"
    tables = sorted(p.name for p in (local / "tables").glob("*.csv"))
    for folder in ("tables", "inversion/f_z_plus", "ground_truth/inversion/f_z_plus", "edits/f_z_plus"):
        shutil.rmtree(remote / folder)
    targets = [f"results/ci/tables/{name}" for name in tables]
    result = snakemake(workdir, *targets, "--workflow-profile", str(PROFILE), "--config", "profile=ci", timeout=1500)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "submitted with SLURM jobid" in log  # it went through the cluster, not a local fallback
    for rule in ("invert", "invert_ground_truth", "edit", "tables", "editing_tables"):
        assert f"rule {rule}:" in log, f"rule {rule} did not run on the cluster"
    assert len(tables) >= 10 and tables == sorted(p.name for p in (remote / "tables").glob("*.csv"))
    differing = [
        name for name in tables if (local / "tables" / name).read_bytes() != (remote / "tables" / name).read_bytes()
    ]
    assert not differing, f"tables differ between the local and the SLURM run: {differing}"
    assert (remote / "inversion" / "f_z_plus" / "codes.pt").stat().st_size > 0
    assert cluster("start").stdout.startswith(
        "local_slurm: already running"
    )  # idempotent: a running cluster is left alone
