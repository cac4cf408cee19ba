"""Shared fixtures: tiny random generators (fast on 2 CPU cores), the asset mirror, and one local run of the
pipeline on the `ci` profile (tests/test_pipeline.py, tests/test_slurm.py)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

import fzplus  # noqa: F401  (installs the torchvision fallback before any test imports torchvision)
from fzplus.assets import REPO_ROOT, asset_mirror
from fzplus.generator import Generator


def make_tiny_generator(*, resolution: int = 32, seed: int = 0, z_dim: int = 512, w_dim: int = 512) -> Generator:
    """A random StyleGAN2 with narrow channels and non-zero noise strengths and biases (so that every
    parameter matters in identity tests). z/w stay 512-wide: the sphere radius sqrt(512) is part of the
    contract under test."""
    torch.manual_seed(seed)
    G = Generator(resolution=resolution, z_dim=z_dim, w_dim=w_dim, channel_base=1024, channel_max=32, mapping_layers=2)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                p.normal_(0.0, 0.1)
    # w_avg as a real generator would have it: the mean of many mapped codes.
    G.mapping.w_avg.copy_(G.mapping(torch.randn(2048, z_dim)).mean(0).detach())
    return G.eval().requires_grad_(False)


def make_domain_encoder(generator: Generator, *, seed: int = 0, scale: float = 0.01):
    """A small IDInvert encoder (fzplus.encoders.domain) for `generator` whose answer depends on the image (random
    dense weights of std `scale`; scale 0 keeps the untrained encoder's constant w_avg), in eval mode."""
    from fzplus.encoders.domain import build_domain_encoder

    torch.manual_seed(seed)
    encoder = build_domain_encoder(generator, channel_base=4, channel_max=8)
    with torch.no_grad():
        encoder.dense.weight.normal_(0.0, scale)
    return encoder.eval().requires_grad_(False)


def encoder_for(space, generator: Generator):
    """The encoder a space's `encoder_kind` needs in unit tests: IDInvert's (above) or none (F spaces fall back
    to the mean feature map)."""
    return make_domain_encoder(generator) if space.encoder_kind == "w-plus" else None


@pytest.fixture
def tiny_generator() -> Generator:
    return make_tiny_generator()


@pytest.fixture(scope="session")
def make_tiny_stylegan1():
    """A builder of random StyleGAN1s made like make_tiny_generator's StyleGAN2s: narrow channels, z and w 512-wide,
    non-zero noise strengths, biases and constant, w_avg the mean of mapped codes. The fixture is the builder, so that
    module-scoped fixtures build theirs once."""
    from fzplus.generator import StyleGAN1Generator

    def build(*, resolution: int = 16, seed: int = 0, fused_scale: bool | str = "auto") -> StyleGAN1Generator:
        torch.manual_seed(seed)
        G = StyleGAN1Generator(
            resolution=resolution, channel_base=128, channel_max=16, mapping_layers=2, fused_scale=fused_scale
        )
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                    p.normal_(0.0, 0.1)
            G.synthesis.b4.const.normal_()  # initialised to ones, where the bias before lrelu would hardly show
            G.mapping.w_avg.copy_(G.mapping(torch.randn(2048, G.z_dim)).mean(0))
        return G.eval().requires_grad_(False)

    return build


@pytest.fixture
def mirror() -> pathlib.Path:
    path = asset_mirror()
    if path is None:
        pytest.skip("no asset mirror (set FZPLUS_ASSET_MIRROR or place ../shared/assets beside the checkout)")
    return path


def snakemake(
    workdir: pathlib.Path, *args: str, env: dict | None = None, timeout: int = 900, repo: pathlib.Path = REPO_ROOT
) -> subprocess.CompletedProcess:
    """The workflow of `repo` (default: this repository) run in `workdir` (its results/ go there)."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    # cwd: `python -m` puts the working folder first on sys.path, so the workflow imports `repo`'s packages
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=repo
    )


_CI_RUN: dict = {}  # the background ci run: workdir, process, log


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: only a session that needs it starts the run
def pytest_collection_modifyitems(session, config, items):
    """The ci run takes ~5 min of both cores and the unit tests use one thread each: start the run now, in
    the background, and put the tests that need it last, so that the unit tests run beside it."""
    users = [item for item in items if "ci_run" in getattr(item, "fixturenames", ())]
    if not users:
        return
    items[:] = [item for item in items if item not in users] + users  # their own order is kept
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="fzplus-ci-run-"))
    log = open(workdir / "snakemake.log", "w")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO_ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--config",
        "profile=ci",
    ]
    _CI_RUN.update(workdir=workdir, log=log, process=subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))


def pytest_sessionfinish(session, exitstatus):
    if not _CI_RUN:
        return
    if _CI_RUN["process"].poll() is None:
        _CI_RUN["process"].kill()
        _CI_RUN["process"].wait()
    _CI_RUN["log"].close()
    shutil.rmtree(_CI_RUN["workdir"], ignore_errors=True)


@pytest.fixture(scope="session")
def ci_run():
    """(workdir, results/ci) of a local `snakemake --cores 2` on the ci profile (started at collection, see
    above), shared by every test that needs it."""
    process, workdir = _CI_RUN["process"], _CI_RUN["workdir"]
    returncode = process.wait(timeout=1800)
    _CI_RUN["log"].flush()
    assert returncode == 0, (workdir / "snakemake.log").read_text()[-4000:]
    return workdir, workdir / "results" / "ci"


def pytest_configure(config):
    # One torch thread per test process by default: on a 2-core machine, OpenMP threads competing with any
    # other busy process (a Snakemake job, a training run) make runs 5-100x slower; FZPLUS_TEST_THREADS=N
    # overrides.
    torch.set_num_threads(int(os.environ.get("FZPLUS_TEST_THREADS", "1")))
