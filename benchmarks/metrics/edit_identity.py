"""The editing protocol scored (SPEC §8): identity similarity of every edit of fzplus.edits.protocol's sweep to
its target, and the attribute change each attribute edit achieves."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmarks.metrics.identity import identity_similarity
from fzplus.edits.attributes import ATTRIBUTES, label_attributes
from fzplus.edits.directions import Directions
from fzplus.edits.protocol import DEFAULT_ALPHAS, edit_sweep
from fzplus.faces.landmarks import locate_faces


def identity_sweep(
    targets: torch.Tensor,
    image_ids: Sequence[str],
    codes: dict[str, torch.Tensor],
    space,
    generator,
    families: dict[str, Directions],
    identity_backend,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    batch_size: int = 64,
    keep: Callable[[str, str, str, float], bool] | None = None,
    attribute_families: Sequence[str] = ("interfacegan",),
    progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Identity similarity of every edit to its target, and the attribute change each attribute edit achieves.

    targets [N, 3, R, R] in [-1, 1]. Returns the long table of the data contract (space, family, direction,
    image_id, alpha, similarity, distance, target_detected, edited_detected, attribute_score) and the edited
    images {(family, direction, image_id, alpha): [3, R, R]} for which keep(family, direction, image_id,
    alpha) is true (grids, realism features).
    attribute_score: for the directions of `attribute_families` named after a landmark attribute
    (fzplus.edits.attributes.ATTRIBUTES, e.g. InterFaceGAN's smile), the edited face's score of that
    attribute; NaN elsewhere and where no face is detected (landmarks of a missed face are not a score).
    An alpha = 0 edit is the inversion itself whatever the direction (tested), so its faces are scored
    once per image rather than once per direction: face embedding is most of this function's time.
    """
    rows, kept, unedited = [], {}, {}
    total = sum(len(d.names) for d in families.values()) * len(alphas) * -(-len(image_ids) // batch_size)
    bar = tqdm(total=total, desc=f"edit {space.name}", disable=not progress)
    target_embeddings, target_detected = identity_backend.embed(targets)
    shared = identity_backend.shares_face_location
    detection_size = identity_backend.min_size if shared else 256  # the labeller's own default otherwise
    for family, directions in families.items():
        for name, alpha, part, images in edit_sweep(
            codes,
            space,
            generator,
            directions,
            alphas=alphas,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            batch_size=batch_size,
        ):
            labelled = family in attribute_families and name in ATTRIBUTES
            cache_key = (part.start, name if labelled else None)
            if alpha == 0 and cache_key in unedited:
                scores = unedited[cache_key]  # `assign` below copies; the cached frame stays as scored
            else:
                faces = locate_faces(images, min_size=detection_size) if labelled else None
                embedded = identity_backend.embed(images, faces=faces) if shared and faces is not None else None
                scores = identity_similarity(
                    identity_backend,
                    None,
                    images,
                    embedded_targets=(target_embeddings[part], target_detected[part]),
                    embedded_edited=embedded,
                )
                score = np.full(len(scores), np.nan)
                if labelled:
                    labels = label_attributes(None, faces=faces, progress=False)
                    score = labels[name].where(labels["detected"]).to_numpy(dtype=float)
                scores = scores.assign(attribute_score=score)
                if alpha == 0:
                    unedited[cache_key] = scores
            ids = list(image_ids[part])
            rows.append(scores.assign(space=space.name, family=family, direction=name, image_id=ids, alpha=alpha))
            if keep is not None:
                for j, image_id in enumerate(ids):
                    if keep(family, name, image_id, alpha):
                        kept[(family, name, image_id, alpha)] = images[j]
            bar.update()
    bar.close()
    table = pd.concat(rows, ignore_index=True)
    columns = [
        "space",
        "family",
        "direction",
        "image_id",
        "alpha",
        "similarity",
        "distance",
        "target_detected",
        "edited_detected",
        "attribute_score",
    ]
    return table[columns], kept
