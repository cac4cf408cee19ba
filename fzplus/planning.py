"""What the workflow checks while planning, which needs the run's files and not only its (loaded) config: the assets
the config uses (materialised, verified, their problems and hashes), and the architecture of its generators
(read from the checkpoint without building the network) with the spaces defined for it. Load-time checks of the
config itself are fzplus.config's.

    from fzplus.planning import config_asset_problems, space_architecture_problems
    problems = config_asset_problems(cfg) + space_architecture_problems(cfg)   # empty: the run can be planned
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import spaces
from fzplus.assets import (
    REPO_ROOT,
    asset_mirror,
    asset_problem,
    asset_sha256s,
    load_asset_declarations,
    materialize_asset,
)
from fzplus.config import FIG8, asset_references, resolve_path
from fzplus.generator import CheckpointError, read_checkpoint_metadata
from fzplus.generator.interface import architecture_of


def materialize_config_assets(config: Mapping[str, Any]) -> dict[str, pathlib.Path]:
    """Key path -> verified local path of every asset a (loaded) config uses, e.g.
    {"targets.asset": resources/celebahq-stargan-v2}; see fzplus.assets.materialize_asset."""
    options = _asset_options(config)
    return {key: materialize_asset(name, **options) for key, name in asset_references(config).items()}


def config_asset_problems(config: Mapping[str, Any]) -> list[str]:
    """fzplus.assets.asset_problem for every asset a (loaded) config uses, and a message for every file or folder the
    Fig. 8 section names by path that is not there: empty when all can be had."""
    options = _asset_options(config)
    found = [asset_problem(name, **options) for name in asset_references(config).values()]
    section = config.get(FIG8) or {}
    paths = {
        f"{FIG8}.generator.checkpoint": (section.get("generator", {}).get("checkpoint"), "a generator checkpoint"),
        f"{FIG8}.targets.folder": (section.get("targets", {}).get("folder"), "a folder of target images"),
        f"{FIG8}.encoder": (section.get("encoder"), "a base-code encoder file for the section's generator"),
    }
    for key, (value, what) in paths.items():
        if value and not resolve_path(value).exists():
            found.append(
                f"{key} = {value!r} is missing: expected {what} at {resolve_path(value)}. Provide it there, or point "
                f"{key} at it (relative paths are relative to {REPO_ROOT}), or set {FIG8}: null to run without the "
                "Fig. 8 section"
            )
    return [problem for problem in found if problem]


def config_asset_hashes(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """fzplus.assets.asset_sha256s of every asset a (loaded) config uses, for provenance.json."""
    return asset_sha256s(asset_references(config).values(), **_asset_options(config))


def generator_architecture(config: Mapping[str, Any], *, section: str = "generator") -> str | None:
    """The architecture (a key of fzplus.generator.interface.ARCHITECTURES) of a (loaded) config's generator, as
    planning can know it: the random stand-in's, else the one its checkpoint declares (read_checkpoint_metadata
    parses the file and builds no network). None while the file cannot be read here: an asset not fetched yet, or
    a file that is no checkpoint (the generator job then says what is wrong with it). section: "generator", or
    "fig8.generator" for the Fig. 8 section's."""
    generator = config
    for part in section.split("."):
        generator = generator[part]
    if generator["random"]:
        return generator["random"]["architecture"]
    path = (
        resolve_path(generator["checkpoint"])
        if generator["checkpoint"]
        else _local_asset_file(config, generator["asset"])
    )
    if path is None or not path.is_file():
        return None
    try:
        return architecture_of(read_checkpoint_metadata(path)["config"])
    except (CheckpointError, OSError):
        return None


def space_architecture_problems(config: Mapping[str, Any]) -> list[str]:
    """Why spaces of a (loaded) config's inversion.spaces are not defined for its generator's architecture, and those
    of fig8.spaces for the Fig. 8 section's generator (each plugin's LatentSpace.architecture_problem: the space,
    the architecture, why, what to do): empty when every one
    is, or when the architecture cannot be known while planning (the inversion engine then refuses at the job).
    A method's pivot needs no check of its own: a plugin's registration refuses a method defined for more
    architectures than its pivot."""
    compared = {"generator": ("", config["inversion"]["spaces"])}
    if config.get(FIG8):
        compared[f"{FIG8}.generator"] = (f"{FIG8} (the section's spaces are {FIG8}.spaces): ", config[FIG8]["spaces"])
    problems = []
    for section, (prefix, names) in compared.items():
        architecture = generator_architecture(config, section=section)
        if architecture is not None:
            found = (spaces.get(name).architecture_problem(architecture) for name in names)
            problems += [prefix + problem for problem in found if problem]
    return problems


def _asset_options(config: Mapping[str, Any]) -> dict[str, Any]:
    mirror = config["asset_mirror"]
    return dict(
        declarations=load_asset_declarations(resolve_path(config["asset_declarations"])),
        resources_dir=resolve_path(config["resources_dir"]),
        mirror=None if mirror is None else resolve_path(mirror),
        download=config["allow_download"],
    )


def _local_asset_file(config: Mapping[str, Any], name: str) -> pathlib.Path | None:
    """A file asset's copy that is here already (resources, then the mirror), fetching nothing; else None."""
    options = _asset_options(config)
    declaration = options["declarations"].get(name)
    if declaration is None or declaration.kind != "file":
        return None
    file = next(iter(declaration.files))
    mirror = asset_mirror(options["mirror"])
    places = [options["resources_dir"] / name] + ([mirror / name] if mirror is not None else [])
    return next((place / file for place in places if (place / file).is_file()), None)
