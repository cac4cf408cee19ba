"""Edit-direction finders: one plugin module per method, a validated registry, and the `Directions` record.

Every finder returns a `Directions`: K vectors [K, D] in one domain ("Z": the prior space the mapping
network reads, edited by Z, Z+, F/Z, F/Z+; "W": the intermediate space, edited by W, W+, F/W, F/W+),
their names, and diagnostics (explained variance, SVM accuracy, ...). Finders are deterministic for a
seed. Applying a direction to a space is the space plugin's business, not the finder's.

Functional use (notebook):
    from fzplus.edits.directions import find_directions
    dirs = find_directions("ganspace", mapping=G.mapping, domain="Z", components=(1, 2, 3))

Adding a method: a new module in this package that calls `register_direction_finder(...)` at import;
modules here are discovered and imported when the package is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from fzplus.io import atomic_write

DOMAINS = ("Z", "W")


@dataclasses.dataclass(frozen=True)
class Directions:
    """K edit directions in one latent domain.

    vectors:     [K, D] float32, CPU. Unit rows when `unit` is True (all finders but "random").
    domain:      "Z" or "W".
    names:       K names, unique (used as keys in result tables).
    method:      registry name of the finder that produced them.
    unit:        whether the rows are normalised to length 1.
    diagnostics: JSON-serialisable facts about the fit (per-direction lists have length K).
    """

    vectors: torch.Tensor
    domain: str
    names: tuple[str, ...]
    method: str
    unit: bool
    diagnostics: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.vectors, torch.Tensor) or self.vectors.ndim != 2:
            raise ValueError(
                f"Directions.vectors must be a [K, D] tensor, got {type(self.vectors).__name__} "
                f"{tuple(getattr(self.vectors, 'shape', ()))}"
            )
        object.__setattr__(self, "vectors", self.vectors.detach().to("cpu", torch.float32).contiguous())
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if self.domain not in DOMAINS:
            raise ValueError(f"Directions.domain must be one of {DOMAINS}, got {self.domain!r}")
        if len(self.names) != self.vectors.shape[0] or len(set(self.names)) != len(self.names):
            raise ValueError(f"Directions.names must be {self.vectors.shape[0]} unique names, got {self.names}")
        if not torch.isfinite(self.vectors).all():
            raise ValueError(f"Directions from {self.method!r} contain non-finite values")
        if self.unit and not torch.allclose(self.vectors.norm(dim=1), torch.ones(len(self)), atol=1e-4):
            raise ValueError(
                f"Directions from {self.method!r} are declared unit but have norms {self.vectors.norm(dim=1).tolist()}"
            )

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __getitem__(self, name: str) -> torch.Tensor:
        """One direction [D] by name."""
        if name not in self.names:
            raise KeyError(f"no direction {name!r}; available: {list(self.names)}")
        return self.vectors[self.names.index(name)]

    def save(self, path: str | os.PathLike) -> None:
        """An .npz with the vectors and a JSON header (domain, names, method, unit, diagnostics)."""
        header = dict(
            domain=self.domain,
            names=list(self.names),
            method=self.method,
            unit=self.unit,
            diagnostics=dict(self.diagnostics),
        )
        # a file object (not a name) keeps numpy from appending a second ".npz"
        atomic_write(path, lambda f: np.savez(f, vectors=self.vectors.numpy(), header=np.array(json.dumps(header))))

    def diagnostics_table(self) -> pd.DataFrame:
        """One row per direction: method, domain, direction, norm, and every per-direction diagnostic (a list
        of length K: explained variance, SVM held-out accuracy, ...). Fit-wide settings are left out."""
        rows = dict(
            method=self.method, domain=self.domain, direction=list(self.names), norm=self.vectors.norm(dim=1).tolist()
        )
        for key, value in self.diagnostics.items():
            if (
                isinstance(value, (list, tuple))
                and len(value) == len(self)
                and all(isinstance(v, (int, float)) for v in value)
            ):
                rows[key] = list(value)
        return pd.DataFrame(rows)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Directions:
        try:
            with np.load(path, allow_pickle=False) as data:
                vectors, header = data["vectors"], json.loads(str(data["header"]))
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{os.fspath(path)!r} is not a Directions file written by Directions.save ({e})") from e
        return cls(vectors=torch.from_numpy(vectors), **header)


@dataclasses.dataclass(frozen=True)
class DirectionFinder:
    """A registered method. `find(**kwargs) -> Directions`; its keyword defaults are the method's defaults."""

    name: str
    find: Callable[..., Directions]
    description: str
    domains: tuple[str, ...]


_REGISTRY: dict[str, DirectionFinder] = {}


def register_direction_finder(
    *, name: str, find: Callable[..., Directions], description: str, domains: tuple[str, ...] = DOMAINS
) -> None:
    """Add a finder. Clear errors on a duplicate name, a missing/empty field, or keyword-less `find`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"direction finder needs a non-empty string name, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(
            f"direction finder {name!r} is registered twice ({_REGISTRY[name].find.__module__} "
            f"and {getattr(find, '__module__', '?')}); rename one"
        )
    if not callable(find):
        raise TypeError(f"direction finder {name!r}: find must be callable")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"direction finder {name!r}: a one-line description is required")
    if not domains or any(d not in DOMAINS for d in domains):
        raise ValueError(f"direction finder {name!r}: domains must be a non-empty subset of {DOMAINS}, got {domains}")
    positional = [
        p.name
        for p in inspect.signature(find).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if positional:
        raise TypeError(f"direction finder {name!r}: arguments must be keyword-only, got positional {positional}")
    _REGISTRY[name] = DirectionFinder(name=name, find=find, description=description.strip(), domains=tuple(domains))


def direction_finders() -> dict[str, DirectionFinder]:
    """All registered finders by name (a copy)."""
    return dict(_REGISTRY)


def get_direction_finder(name: str) -> DirectionFinder:
    if name not in _REGISTRY:
        raise KeyError(f"unknown direction finder {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def find_directions(method: str, **kwargs) -> Directions:
    """Run the finder `method` with its keyword arguments (unknown keywords are a clear error)."""
    finder = get_direction_finder(method)
    accepted = inspect.signature(finder.find).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"direction finder {method!r} does not take {unknown}; it takes {sorted(accepted)}")
    directions = finder.find(**kwargs)
    if not isinstance(directions, Directions) or directions.method != method:
        raise TypeError(f"direction finder {method!r} must return a Directions record with method={method!r}")
    return directions


def _discover_plugins() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_discover_plugins()

__all__ = [
    "DOMAINS",
    "Directions",
    "DirectionFinder",
    "register_direction_finder",
    "direction_finders",
    "get_direction_finder",
    "find_directions",
]
