"""The editing protocol (SPEC §7, paper §3.4 / §4): every direction of a family, at every step size,
applied by a space in its own domain to the layers it edits, rendered in batches. The edits are scored by
benchmarks.metrics.edit_identity.

The unit of alpha is set by fzplus.edits.calibration (SPEC §7): the pipeline saves calibrated directions,
whose vectors are the code change per unit of alpha; in Z that is the finders' own vectors (the authors'
convention), in W they are scaled by the spread of W along each direction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fzplus.edits.calibration import is_calibrated
from fzplus.edits.directions import Directions
from fzplus.inversion import edit, render

DEFAULT_ALPHAS = tuple(np.linspace(-2.0, 2.0, 11).round(6))


def step_vectors(directions: Directions) -> list[tuple[str, torch.Tensor]]:
    """(name, code change per unit of alpha) for each direction of a family."""
    if directions.domain == "W" and not is_calibrated(directions):
        raise ValueError(
            f"the {directions.method!r} W directions have no unit of alpha yet: pass them through "
            "fzplus.edits.calibration.calibrate_directions (Z directions are their own unit)"
        )
    return [(name, directions.vectors[k]) for k, name in enumerate(directions.names)]


def edit_sweep(
    codes: dict[str, torch.Tensor],
    space,
    generator,
    directions: Directions,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    batch_size: int = 64,
) -> Iterator[tuple[str, float, slice, torch.Tensor]]:
    """Yields (direction name, alpha, image slice, edited images [n, 3, R, R]) for every direction x alpha,
    `batch_size` images at a time. codes: a space's batch-first codes of N images."""
    if directions.domain != space.domain:
        raise ValueError(
            f"space {space.name!r} edits in {space.domain}, but the {directions.method!r} directions are in "
            f"{directions.domain}; fit the family in {space.domain} too"
        )
    n = next(iter(codes.values())).shape[0]
    for name, vector in step_vectors(directions):
        for alpha in alphas:
            for start in range(0, n, batch_size):
                part = slice(start, min(n, start + batch_size))
                chunk = {k: v[part] for k, v in codes.items()}
                moved = edit(chunk, space, generator, vector, float(alpha))
                images = render(
                    moved, generator, space, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
                )
                yield name, float(alpha), part, images.clamp(-1, 1)  # scored as saved images are
