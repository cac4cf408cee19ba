"""Profile configs (config/<profile>.yaml): load, apply overrides, fill defaults, validate.

    from fzplus.config import load_config
    cfg = load_config("config/mini.yaml")                      # or a bare profile name: load_config("mini")
    cfg = load_config("mini", overrides={"inversion.steps": 5})  # dotted keys or nested dicts

The schema (workflow/schemas/config.schema.yaml, plus the sections generated from the dataclasses that hold
their defaults: the inversion's own settings, each plugin's settings section and the encoder recipes; see
`load_schema`) is the single place of defaults and allowed values. An invalid config raises `ConfigError`, whose
message names the file, every offending key path (e.g.
`inversion.steps`) and what is allowed. Checks the schema cannot express (registered space names,
exactly-one-of choices, references between keys, asset names) follow the schema check. Checks that need the run's
files, not only its config (are the assets there; is every space defined for the generator's architecture) are
fzplus.planning's, made by the workflow while planning. The Fig. 8 section (`fig8:`, a second generator with its own
targets) is checked by the same functions, its messages prefixed with `fig8.`.
"""

from __future__ import annotations

import copy
import difflib
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jsonschema
import yaml

import spaces
from fzplus.assets import (
    REPO_ROOT,
    AssetError,
    load_asset_declarations,
)
from fzplus.edits.attributes import ATTRIBUTES
from fzplus.encoders import KINDS as ENCODER_KINDS
from fzplus.inversion.settings import InversionSettings
from fzplus.settings import schema_of

CONFIG_DIR = REPO_ROOT / "config"
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
EXACTLY_ONE_OF = {"generator": ("checkpoint", "asset", "random"), "targets": ("asset", "folder")}
FIG8 = "fig8"  # the Fig. 8 section: keys of its own, and `generator` and `targets` like the main sections'
# the keys of a section that replace the main run's values (the section's schema validates them merged)
FIG8_OVERRIDES = {"inversion": ("inversion",), "ganspace": ("directions", "ganspace")}


class ConfigError(ValueError):
    """An invalid profile config; the message lists every problem found."""


def load_schema() -> dict:
    """The config schema: the YAML file plus the sections generated from their settings classes (the one home of
    their defaults): the inversion's own keys (fzplus.inversion.settings), `inversion.<settings_key>` of every
    registered plugin that declares settings (spaces.base), each encoder kind's recipe section
    (fzplus.encoders.KINDS), and the Fig. 8 section's `generator` and `targets`, copies of the main sections' schemas.
    A section written in the YAML file as well is refused: a default lives once."""
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    generated = {("inversion", name): prop for name, prop in schema_of(InversionSettings)["properties"].items()}
    owners: dict[str, tuple[type, str]] = {}
    for space in map(spaces.get, spaces.names()):
        if space.settings_key is None:
            continue
        owner = owners.setdefault(space.settings_key, (space.settings_class, space.name))
        if owner[0] is not space.settings_class:
            raise ConfigError(
                f"plugins {owner[1]!r} and {space.name!r} both use the settings section inversion.{space.settings_key} "
                f"with different settings classes; give one of them another settings_key"
            )
        generated[("inversion", space.settings_key)] = schema_of(space.settings_class)
    for kind in ENCODER_KINDS.values():
        generated[(kind.section,)] = schema_of(kind.recipe)
    for name in EXACTLY_ONE_OF:
        generated[(FIG8, name)] = copy.deepcopy(schema["properties"][name])
    for path, section in generated.items():
        parent = schema
        for part in path[:-1]:
            parent = parent["properties"][part]
        if path[-1] in parent["properties"]:
            raise ConfigError(
                f"{SCHEMA_PATH.name} writes {'.'.join(path)}, which is generated from its settings class; "
                "remove it from the file (its defaults live in the class)"
            )
        parent["properties"][path[-1]] = section
    return schema


def resolve_path(value: str | os.PathLike) -> pathlib.Path:
    """A config path: absolute as given, relative to the repository root otherwise."""
    path = pathlib.Path(value).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def load_config(
    path_or_dict: str | os.PathLike | Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None
) -> dict:
    """A validated config with every default filled in.

    path_or_dict: a YAML file, a bare profile name ('mini' -> config/mini.yaml) or an already parsed dict.
    overrides: applied before validation; keys may be dotted paths ({"inversion.steps": 5}, handy for
    Python callers) or nested dicts (Snakemake's `--config 'inversion={steps: 5}'`, see command_line_overrides);
    a None value sets the key to null.
    """
    config, source = _read(path_or_dict)
    for key, value in (overrides or {}).items():
        _set_dotted(config, str(key), copy.deepcopy(value))
    schema = load_schema()
    fill_defaults(config, schema)
    if isinstance(config.get("inversion"), dict) and config["inversion"].get("spaces", []) is None:
        # every registered plugin, so that a new file is compared by default; in the tables' row order
        config["inversion"]["spaces"] = spaces.order_spaces(spaces.names())
    problems = schema_problems(config, schema) or semantic_problems(config) + fig8_problems(config, schema=schema)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"invalid config {source}:\n{lines}\n(allowed keys and values: {SCHEMA_PATH.relative_to(REPO_ROOT)})"
        )
    return config


def command_line_overrides(config: Mapping[str, Any]) -> dict:
    """Overrides as Snakemake's `--config` hands them over, made typed.

    Snakemake 8+ refuses dotted names on its command line, so nested keys are given as YAML mappings,
    `--config 'inversion={steps: 50}'`, which Snakemake parses with YAML's BaseLoader: every scalar inside
    arrives as a string ('50', '1e-8', 'null', 'true'). A string that reads as a number, null or boolean becomes
    one, inside mappings and lists and at the top level (Snakemake types top-level numbers but hands over `fig8=null`
    as 'null'); other strings stay strings.
    """

    def scalar(text: str) -> Any:
        for parse in (int, float):
            try:
                return parse(text)
            except ValueError:
                pass
        parsed = yaml.safe_load(text) if text.strip() else text
        return parsed if parsed is None or isinstance(parsed, bool) else text

    def typed(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: typed(sub) for key, sub in value.items()}
        if isinstance(value, list):
            return [typed(item) for item in value]
        return scalar(value) if isinstance(value, str) else value

    return {key: typed(value) for key, value in config.items()}


def _read(path_or_dict) -> tuple[dict, str]:
    if isinstance(path_or_dict, Mapping):
        return copy.deepcopy(dict(path_or_dict)), "<dict>"
    path = pathlib.Path(path_or_dict)
    if not path.is_file() and path.suffix == "" and path.parent == pathlib.Path("."):
        path = CONFIG_DIR / f"{path.name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "assets")
        raise FileNotFoundError(f"config file {str(path_or_dict)!r} does not exist; profiles in {CONFIG_DIR}: {known}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid config {path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data, str(path)


def with_overrides(section: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict:
    """A copy of a config section with `overrides` applied as load_config applies its own (dotted or nested keys;
    a nested mapping replaces only the keys it names)."""
    merged = copy.deepcopy(dict(section))
    for key, value in overrides.items():
        _set_dotted(merged, str(key), copy.deepcopy(value))
    return merged


def _set_dotted(config: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {'.'.join(parents[: i + 1])} is not a mapping (it is {child!r})")
        node = child
    if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
        for sub_key, sub_value in value.items():
            _set_dotted(node[leaf], str(sub_key), sub_value)
    else:
        node[leaf] = value


def fill_defaults(instance: Any, schema: Mapping[str, Any]) -> None:
    """Insert the schema's `default` of every missing key, recursively (in place). Objects without a
    default are filled only where present, so missing required sections stay missing and are reported."""
    if not isinstance(instance, dict):
        return
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill_defaults(instance[key], sub)
    # schema order, so that a dumped config (provenance) reads like the schema; unknown keys stay, last
    ordered = {k: instance.pop(k) for k in properties if k in instance}
    unknown = dict(instance)
    instance.clear()
    instance.update(ordered)
    instance.update(unknown)


# ---- schema errors rewritten for humans ---------------------------------------------------------------
def key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def schema_problems(config: dict, schema: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    return [_describe(e) for e in errors]


def _describe(error: jsonschema.ValidationError) -> str:
    where, kind, arg, value = key_path(error.absolute_path), error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        parts = []
        for extra in sorted(set(value) - set(allowed)):
            close = difflib.get_close_matches(extra, allowed, n=1)
            hint = f" (did you mean {key_path([*error.absolute_path, close[0]])!r}?)" if close else ""
            parts.append(
                f"unknown key {key_path([*error.absolute_path, extra])!r}{hint}; "
                f"allowed under {where}: {', '.join(allowed)}"
            )
        return "; ".join(parts)
    if kind == "required":
        missing = [k for k in arg if k not in value]
        return "; ".join(f"missing key {key_path([*error.absolute_path, k])!r}" for k in missing)
    if kind == "enum":
        return f"{where} = {value!r} is not allowed; allowed: {', '.join(repr(a) for a in arg)}"
    if kind == "type":
        wanted = " or ".join(arg) if isinstance(arg, list) else arg
        return f"{where} must be of type {wanted}, got {value!r} ({type(value).__name__})"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return f"{where} must be {bounds[kind]} {arg}, got {value!r}"
    counts = {"minItems": "at least", "maxItems": "at most"}
    if kind in counts:
        return f"{where} must have {counts[kind]} {arg} item(s), got {len(value)}"
    if kind == "uniqueItems":
        return f"{where} must not repeat items, got {value!r}"
    if kind == "pattern":
        return f"{where} = {value!r} must match the pattern {arg!r}"
    return f"{where}: {error.message}"


# ---- checks the schema cannot express -----------------------------------------------------------------
def _exactly_one_of_problems(config: Mapping[str, Any], *, prefix: str = "") -> list[str]:
    problems = []
    for section, choices in EXACTLY_ONE_OF.items():
        given = [k for k in choices if config[section].get(k) is not None]
        if len(given) != 1:
            problems.append(
                f"{prefix}{section}: give exactly one of {', '.join(choices)} (set the others to null); got "
                f"{', '.join(given) if given else 'none'}"
            )
    return problems


def semantic_problems(config: dict) -> list[str]:
    problems = _exactly_one_of_problems(config)

    # Space names are checked against the plugin registry, not the schema: a new plugin file needs no schema edit.
    def canonical_names(names, where) -> list[str | None]:
        out = []
        for i, name in enumerate(names):
            try:
                out.append(spaces.get(name).name)
            except KeyError:
                close = difflib.get_close_matches(name, spaces.names(), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"{where}[{i}] = {name!r} is not a registered latent space{hint}; "
                    f"known: {', '.join(spaces.names())}"
                )
                out.append(None)
        return out

    inverted = canonical_names(config["inversion"]["spaces"], "inversion.spaces")
    known = [n for n in inverted if n is not None]
    if len(set(known)) != len(known):
        problems.append(f"inversion.spaces names a space twice (by name and by slug): {config['inversion']['spaces']}")
    for i, pair in enumerate(config["statistics"]["pairs"]):
        for name in canonical_names(pair, f"statistics.pairs[{i}]"):
            if name is not None and name not in inverted:
                problems.append(
                    f"statistics.pairs[{i}] compares {name!r}, which is not in inversion.spaces; "
                    "add it there or drop the pair"
                )

    random_generator = config["generator"].get("random")
    if random_generator and config["inversion"]["base_size"] >= random_generator["resolution"]:
        problems.append(
            f"inversion.base_size ({config['inversion']['base_size']}) must be smaller than "
            f"generator.random.resolution ({random_generator['resolution']})"
        )

    interfacegan = config["directions"]["interfacegan"]
    if "interfacegan" in config["directions"]["families"] and interfacegan["boundaries_asset"] is None:
        for i, name in enumerate(interfacegan["attributes"]):
            if name not in ATTRIBUTES:
                problems.append(
                    f"directions.interfacegan.attributes[{i}] = {name!r} cannot be labelled offline; fitted "
                    f"boundaries need one of {', '.join(ATTRIBUTES)} (or set directions.interfacegan.boundaries_asset)"
                )
    problems += _asset_reference_problems(config)
    return problems


def fig8_problems(config: Mapping[str, Any], *, schema: Mapping[str, Any]) -> list[str]:
    """What the schema cannot check of the Fig. 8 section: one source of generator and targets, its spaces (registered,
    and needing nothing the section does not make: P_N statistics, a pivot's inversion, an encoder other than the
    base-code one), and its overrides of the main sections validated merged with them. Empty without the section."""
    section = config.get(FIG8)
    if section is None:
        return []
    problems = _exactly_one_of_problems(section, prefix=f"{FIG8}.")
    for i, name in enumerate(section["spaces"]):
        try:
            space = spaces.get(name)
        except KeyError:
            problems.append(f"{FIG8}.spaces[{i}] = {name!r} is not a registered latent space; known: {spaces.names()}")
            continue
        needs = [
            what
            for what, needed in (
                ("the P_N statistics", space.needs_pn_stats),
                (f"its pivot's inversion ({space.pivot.name if space.pivot else ''})", space.pivot is not None),
                (f"a {space.encoder_kind} encoder", space.encoder_kind not in (None, "base-code")),
            )
            if needed
        ]
        if needs:
            problems.append(
                f"{FIG8}.spaces[{i}] = {space.name!r} needs {' and '.join(needs)}, which the Fig. 8 section does "
                "not make for its generator; compare it in the main run instead"
            )
    for key, main in FIG8_OVERRIDES.items():
        own = sorted({"spaces", "base_size"} & set(section[key])) if key == "inversion" else []
        problems += [f"{FIG8}.inversion.{name}: set it as {FIG8}.{name}, the section's own key" for name in own]
        base, sub_schema = config, schema
        for part in main:
            base, sub_schema = base[part], sub_schema["properties"][part]
        wrapped = {FIG8: {key: with_overrides(base, section[key])}}
        wrapper = {"type": "object", "properties": {FIG8: {"type": "object", "properties": {key: sub_schema}}}}
        problems += schema_problems(wrapped, wrapper)
    random_generator = section["generator"]["random"]
    base_size = section["base_size"] or config["inversion"]["base_size"]
    if random_generator and base_size >= random_generator["resolution"]:
        problems.append(
            f"{FIG8}.base_size ({base_size}, null: inversion.base_size) must be smaller than "
            f"{FIG8}.generator.random.resolution ({random_generator['resolution']})"
        )
    return problems


def asset_references(config: Mapping[str, Any]) -> dict[str, str]:
    """Key path -> asset name, for every asset the config uses (the Fig. 8 section's too)."""
    keys = ("generator.asset", "targets.asset", "perceptual.weights_asset", "identity.weights_asset")
    if config.get(FIG8):
        keys += (f"{FIG8}.generator.asset", f"{FIG8}.targets.asset")
    refs = {}
    for key in keys:
        *sections, leaf = key.split(".")
        node = config
        for section in sections:
            node = node.get(section) or {}
        if node.get(leaf):
            refs[key] = node[leaf]
    interfacegan = config.get("directions", {}).get("interfacegan", {})
    if "interfacegan" in config.get("directions", {}).get("families", ()) and interfacegan.get("boundaries_asset"):
        refs["directions.interfacegan.boundaries_asset"] = interfacegan["boundaries_asset"]
    return refs


def _asset_reference_problems(config: dict) -> list[str]:
    try:
        declarations = load_asset_declarations(resolve_path(config["asset_declarations"]))
    except (AssetError, FileNotFoundError) as exc:
        return [f"asset_declarations: {exc}"]
    problems = [
        f"{key} = {name!r} is not declared in {config['asset_declarations']}; "
        f"declared: {', '.join(sorted(declarations))}"
        for key, name in asset_references(config).items()
        if name not in declarations
    ]
    boundaries = asset_references(config).get("directions.interfacegan.boundaries_asset")
    if boundaries in declarations and declarations[boundaries].files:
        available = sorted(
            f[len("boundary_") : -len(".npy")] for f in declarations[boundaries].files if f.startswith("boundary_")
        )
        for i, name in enumerate(config["directions"]["interfacegan"]["attributes"]):
            if name not in available:
                close = difflib.get_close_matches(name, available, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"directions.interfacegan.attributes[{i}] = {name!r} "
                    f"has no boundary in asset {boundaries!r}{hint}; "
                    f"available: {', '.join(available)}"
                )
    return problems
