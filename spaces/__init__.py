"""Latent-space plugins, one module per space, found automatically.

Every module of this package whose name does not start with '_' (and is not `base`, the contract) is a
plugin and must define `SPACE`, an instance of `spaces.base.LatentSpace`. Adding a space is adding one
file; nothing else is edited.

    import spaces
    spaces.names()            # ['F/S', 'F/W', ..., 'Z+'] (sorted by module name)
    spaces.get("F/Z+")        # by the paper's name
    spaces.get("f_z_plus")    # or by slug
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence

from .base import (
    GeneratorInputs,
    LatentSpace,
    RegistrationError,
    SpaceContext,
    retract_to_sphere,
    sphere_radius,
    validate_space,
)

CONTRACT_MODULES = ("base",)
# The row order of the paper (Table 1 and Fig. 2), extended to every required space, then the methods built on a
# space; plugins outside this list (new ones) follow in alphabetical order.
PAPER_SPACE_ORDER = (
    "Z",
    "Z+",
    "W",
    "W+",
    "W+(P_N)",
    "S",
    "F/Z",
    "F/Z+",
    "F/W",
    "F/W+",
    "F/W+(P_N)",
    "F/S",
    "IDInvert",
    "PTI",
    "PTI w/ Z+",
    "SAM",
    "SAM w/ Z+",
)


def budget_matched_name(method: LatentSpace) -> str:
    """The row of `method`'s pivot space run for the method's whole step cap (LatentSpace.second_stage_cap)."""
    return f"{method.pivot.name} (budget of {method.name})"


def order_spaces(present: Iterable[str], *, spaces_order: Sequence[str] = PAPER_SPACE_ORDER) -> list[str]:
    """The spaces of `present` (each once): those in `spaces_order` in that order, then the others sorted."""
    present = list(dict.fromkeys(present))
    known = [s for s in spaces_order if s in present]
    return known + sorted(s for s in present if s not in spaces_order)


class SpaceRegistry:
    """Spaces by name and by slug; refuses duplicates of either."""

    def __init__(self) -> None:
        self._by_name: dict[str, LatentSpace] = {}
        self._by_slug: dict[str, LatentSpace] = {}
        self._source: dict[str, str] = {}

    def register(self, space: object, *, source: str = "<direct call>") -> LatentSpace:
        space = validate_space(space, source=source)
        for key, table in ((space.name, self._by_name), (space.slug, self._by_slug)):
            if key in table:
                other = self._source[table[key].name]
                raise RegistrationError(
                    f"{source}: a space with name or slug {key!r} is already registered by {other}; "
                    f"rename one of the two plugins"
                )
        self._by_name[space.name] = self._by_slug[space.slug] = space
        self._source[space.name] = source
        return space

    def get(self, key: str | LatentSpace) -> LatentSpace:
        if isinstance(key, LatentSpace):
            return key
        space = self._by_name.get(key) or self._by_slug.get(key)
        if space is None:
            raise KeyError(
                f"unknown latent space {key!r}; known: {self.names()} (or their slugs {sorted(self._by_slug)})"
            )
        return space

    def names(self) -> list[str]:
        return list(self._by_name)

    def source(self, key: str) -> str:
        """Where a space was registered from (module path)."""
        return self._source[self.get(key).name]


def discover(package_name: str, package_path) -> SpaceRegistry:
    """Import every plugin module of a package and register its SPACE."""
    registry = SpaceRegistry()
    for info in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in CONTRACT_MODULES:
            continue
        module = importlib.import_module(f"{package_name}.{info.name}")
        source = getattr(module, "__file__", None) or module.__name__
        if not hasattr(module, "SPACE"):
            raise RegistrationError(
                f"{source}: plugin module defines no SPACE; set SPACE = <a LatentSpace instance>, "
                f"or prefix the file name with '_' if it is not a plugin"
            )
        registry.register(module.SPACE, source=source)
    return registry


_REGISTRY: SpaceRegistry | None = None


def registry() -> SpaceRegistry:
    """The package's registry, built on first use (so plugins may import this package's helpers)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = discover(__name__, __path__)
    return _REGISTRY


def get(key: str | LatentSpace) -> LatentSpace:
    """A space by paper name ('F/Z+') or slug ('f_z_plus'); a LatentSpace is returned as is."""
    return registry().get(key)


def names() -> list[str]:
    return registry().names()


__all__ = [
    "GeneratorInputs",
    "LatentSpace",
    "RegistrationError",
    "SpaceContext",
    "SpaceRegistry",
    "PAPER_SPACE_ORDER",
    "discover",
    "get",
    "names",
    "order_spaces",
    "registry",
    "retract_to_sphere",
    "sphere_radius",
    "validate_space",
]
