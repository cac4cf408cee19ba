"""Settings as frozen dataclasses: the one home of a setting's default, its bounds and its description.

A settings class declares each field with `setting(default, description=..., minimum=...)`. The config schema
section of that class is generated from it (`schema_of`), so a profile is validated, and its missing keys
filled, from the dataclass itself; `settings_from` builds an instance from a config mapping and refuses
unknown keys by name. The inversion's core settings (fzplus.inversion.settings), each method's own settings
(spaces.base: `LatentSpace.settings_class`) and the encoder recipes (fzplus.encoders.recipes) are such classes.

    @dataclass(frozen=True)
    class TuningSettings:
        steps: int = setting(350, description="at most this many steps per image", minimum=0)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

# JSON Schema keywords a setting may carry besides its type and default
CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "minItems", "uniqueItems", "items")
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def setting(default: Any, *, description: str = "", **constraints: Any) -> Any:
    """A dataclass field whose metadata carries the schema's description and constraints (CONSTRAINTS)."""
    unknown = sorted(set(constraints) - set(CONSTRAINTS))
    if unknown:
        raise TypeError(f"setting(): unknown schema keyword(s) {unknown}; known: {list(CONSTRAINTS)}")
    metadata = {"description": description, "constraints": constraints}
    if isinstance(default, (list, dict, set)):
        raise TypeError("setting(): a mutable default would be shared; use a tuple")
    return dataclasses.field(default=default, metadata=metadata)


def _json_type(annotation: Any, *, where: str) -> dict:
    """The JSON Schema of a field's type: int, float, bool, str, tuple[X, ...], each optionally `| None`."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"{where}: only `X | None` unions are settings, got {annotation}")
        schema = _json_type(inner[0], where=where)
        schema["type"] = [schema["type"], "null"]
        return schema
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{where}: a sequence setting is tuple[X, ...], got {annotation}")
        return {"type": "array", "items": _json_type(args[0], where=where)}
    if annotation in JSON_TYPES:
        return {"type": JSON_TYPES[annotation]}
    raise TypeError(f"{where}: a setting is int, float, bool, str, tuple[X, ...] or X | None, got {annotation}")


def _json_value(value: Any) -> Any:
    return [_json_value(v) for v in value] if isinstance(value, tuple) else value


def schema_of(cls: type, *, description: str = "") -> dict:
    """The config schema section of settings class `cls`: every field with its type, default, description and
    constraints; unknown keys refused; the section itself defaults to {} (every field's default)."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"settings must be a dataclass, got {cls!r}")
    hints = typing.get_type_hints(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        where = f"{cls.__name__}.{f.name}"
        if f.default is dataclasses.MISSING:
            raise TypeError(
                f"{where} has no default: every setting needs one (declare it with fzplus.settings.setting)"
            )
        prop = _json_type(hints[f.name], where=where)
        constraints = dict(f.metadata.get("constraints", {}))
        if "items" in constraints:
            prop["items"] = {**prop.get("items", {}), **constraints.pop("items")}
        prop.update(constraints)
        prop["default"] = _json_value(f.default)
        if f.metadata.get("description"):
            prop["description"] = f.metadata["description"]
        properties[f.name] = prop
    section = {"type": "object", "additionalProperties": False, "default": {}, "properties": properties}
    doc = description or " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph
    if doc:
        section["description"] = doc
    return section


def settings_from(cls: type, values: Mapping[str, Any] | None, *, what: str) -> Any:
    """An instance of settings class `cls` from a config mapping (None or missing keys: the defaults); unknown
    keys are refused by name (the schema checks the pipeline's config, this a direct caller's). Lists become
    tuples, as the class declares them."""
    if isinstance(values, cls):
        return values
    values = dict(values or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; known: {known}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def as_dict(settings: Any) -> dict:
    """A settings instance as a plain dict (tuples as lists), as a config or a record holds it."""
    return {k: _json_value(v) for k, v in dataclasses.asdict(settings).items()}
