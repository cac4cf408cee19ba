"""The editing protocol (SPEC §7, paper §3.4 / §4): every direction of a family, at every step size,
applied by a space in its own domain to the layers it edits, rendered in batches, and scored by identity
similarity to the target.

The unit of alpha is set by fzplus.edits.calibration (SPEC §7): the pipeline saves calibrated directions,
whose vectors are the code change per unit of alpha; in Z that is the finders' own vectors (the authors'
convention), in W they are scaled by the spread of W along each direction.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from fzplus.edits.calibration import is_calibrated
from fzplus.edits.directions import Directions
from fzplus.inversion import edit, render

DEFAULT_ALPHAS = tuple(np.linspace(-2.0, 2.0, 11).round(6))


def step_vectors(directions: Directions) -> list[tuple[str, torch.Tensor]]:
    """(name, code change per unit of alpha) for each direction of a family."""
    if directions.domain == "W" and not is_calibrated(directions):
        raise ValueError(f"the {directions.method!r} W directions have no unit of alpha yet: pass them through "
                         "fzplus.edits.calibration.calibrate_directions (Z directions are their own unit)")
    return [(name, directions.vectors[k]) for k, name in enumerate(directions.names)]


def edit_sweep(codes: dict[str, torch.Tensor], space, generator, directions: Directions, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
               truncation_psi: float = 1.0, truncation_cutoff: int | None = None, batch_size: int = 64) -> Iterator[tuple[str, float, slice, torch.Tensor]]:
    """Yields (direction name, alpha, image slice, edited images [n, 3, R, R]) for every direction x alpha,
    `batch_size` images at a time. codes: a space's batch-first codes of N images."""
    if directions.domain != space.domain:
        raise ValueError(f"space {space.name!r} edits in {space.domain}, but the {directions.method!r} directions are in "
                         f"{directions.domain}; fit the family in {space.domain} too")
    n = next(iter(codes.values())).shape[0]
    for name, vector in step_vectors(directions):
        for alpha in alphas:
            for start in range(0, n, batch_size):
                part = slice(start, min(n, start + batch_size))
                chunk = {k: v[part] for k, v in codes.items()}
                moved = edit(chunk, space, generator, vector, float(alpha))
                images = render(moved, generator, space, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
                yield name, float(alpha), part, images.clamp(-1, 1)  # scored as saved images are


def identity_sweep(targets: torch.Tensor, image_ids: Sequence[str], codes: dict[str, torch.Tensor], space, generator,
                   families: dict[str, Directions], identity_backend, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
                   truncation_psi: float = 1.0, truncation_cutoff: int | None = None, batch_size: int = 64,
                   keep_images_for: Sequence[str] = (), progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Identity similarity of every edit to its target.

    targets [N, 3, R, R] in [-1, 1]. Returns the long table of the data contract (space, family, direction,
    image_id, alpha, similarity, distance, target_detected, edited_detected) and, for the image ids in
    `keep_images_for`, the edited images {(family, direction, image_id): [len(alphas), 3, R, R]} for grids.
    An alpha = 0 edit is the inversion itself whatever the direction (tested), so its faces are embedded
    once per image rather than once per direction: face embedding is most of this function's time.
    """
    from tqdm.auto import tqdm

    from benchmarks.identity import identity_similarity

    rows, kept, unedited_scores = [], {}, {}
    total = sum(len(d.names) for d in families.values()) * len(alphas) * -(-len(image_ids) // batch_size)
    bar = tqdm(total=total, desc=f"edit {space.name}", disable=not progress)
    keep = {image_ids.index(i) for i in keep_images_for}
    target_embeddings, target_detected = identity_backend.embed(targets)
    for family, directions in families.items():
        for name, alpha, part, images in edit_sweep(codes, space, generator, directions, alphas=alphas, truncation_psi=truncation_psi,
                                                    truncation_cutoff=truncation_cutoff, batch_size=batch_size):
            if alpha == 0 and part.start in unedited_scores:
                scores = unedited_scores[part.start]  # `assign` below copies; the cached frame stays as scored
            else:
                scores = identity_similarity(identity_backend, None, images, embedded_targets=(target_embeddings[part], target_detected[part]))
                if alpha == 0:
                    unedited_scores[part.start] = scores
            ids = list(image_ids[part])
            scores = scores.assign(space=space.name, family=family, direction=name, image_id=ids, alpha=alpha)
            rows.append(scores)
            for j, i in enumerate(range(part.start, part.stop)):
                if i in keep:
                    kept.setdefault((family, name, image_ids[i]), []).append(images[j])
            bar.update()
    bar.close()
    table = pd.concat(rows, ignore_index=True)
    columns = ["space", "family", "direction", "image_id", "alpha", "similarity", "distance", "target_detected", "edited_detected"]
    return table[columns], {k: torch.stack(v) for k, v in kept.items()}
