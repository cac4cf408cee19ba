"""Ground-truth edit fidelity: editability measured against edits whose right answer is known.

Real photos have no true code, so "is this edit right?" can only be asked of a face model. Seeded
generator samples do have one: their z. Inverting such a sample into a space and editing the inversion
should give what the same edit gives when applied to the sample's true codes in that space (its domain,
its layers: for an F space the true f, the generator's own features at the split, with the true detail
codes edited on layers >= M). The per-image distance between the two renders, against alpha, says how
well a space's inversion keeps the generator's editing behaviour; at alpha = 0 it is the distance between
the inversion and the true codes' image. Beside it, the size of the edit it is measured against: the
distance between the true codes' edited and unedited renders (`true_edit_*`), so that a space whose edits
barely move the image (and so score a small fidelity error) shows as such. No face model enters, so it
works at any resolution.

F spaces render a bare f: the generator's RGB skip restarts at the split (the authors' convention), so
their true codes' image differs slightly from the sample itself; `true_code_gap` measures that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from fzplus.edits.directions import Directions
from fzplus.edits.protocol import DEFAULT_ALPHAS, edit_sweep
from spaces.base import SpaceContext, sample_ws

SAMPLE_PREFIX = "generated"


def ground_truth_samples(
    generator, *, count: int, seed: int, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(ids, z [count, z_dim], images [count, 3, R, R] in [-1, 1]) of seeded generator samples."""
    if count < 1:
        raise ValueError(f"ground-truth targets need count >= 1, got {count}")
    G = generator
    z = G.sample_z(count, seed=seed)
    ctx = SpaceContext(generator=G, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    with torch.no_grad():
        images = G.synthesize(sample_ws(z, ctx)).clamp(-1, 1)
    ids = [f"{SAMPLE_PREFIX}{seed:04d}_{i:03d}" for i in range(count)]
    return ids, z, images


def true_codes(
    space,
    z: torch.Tensor,
    generator,
    *,
    base_size: int | None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> dict[str, torch.Tensor]:
    """The space's codes of the samples z [N, z_dim] (spaces.base.LatentSpace.codes_for_sample)."""
    ctx = SpaceContext(
        generator=generator,
        base_size=base_size if space.uses_base_code else None,
        truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff,
    )
    with torch.no_grad():
        return {k: v.detach() for k, v in space.codes_for_sample(z, ctx).items()}


def per_image_mse(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (x - y).square().mean(dim=(1, 2, 3)).double().cpu().numpy()


@torch.no_grad()
def edit_fidelity(
    inverted: dict[str, torch.Tensor],
    truth: dict[str, torch.Tensor],
    space,
    generator,
    families: dict[str, Directions],
    *,
    image_ids: Sequence[str],
    distance: Callable,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    distance_batch: int = 64,
) -> pd.DataFrame:
    """Per image, direction and alpha: perceptual distance and MSE between the edited inversion and the same
    edit of the true codes, and between that true edit and the true codes unedited (the edit's own size).
    inverted / truth: the space's batch-first codes of the same N samples. distance(x, y) -> [N], called on
    batches of `distance_batch` pairs gathered over the whole sweep (one call per edit was most of this
    function's time). A distance that also offers `features(x)` and `between(fx, fy) -> [N]`
    (benchmarks.pipeline.resized_perceptual) is scored from each image's features, computed once: a call would
    run the trunk on both of its images, so the true edit (in both perceptual columns) and the unedited true
    codes (in every true_edit_perceptual) would go through it again and again. Columns: space, family,
    direction, image_id, alpha, perceptual, mse, true_edit_perceptual, true_edit_mse."""
    n = next(iter(inverted.values())).shape[0]
    if len(image_ids) != n or next(iter(truth.values())).shape[0] != n:
        raise ValueError(
            f"edit_fidelity: {len(image_ids)} ids, {n} inverted and {next(iter(truth.values())).shape[0]} true codes; "
            "they must be the same samples"
        )
    render = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, batch_size=n)
    keys, pending, unedited = [], [], None
    scores = {name: [] for name in ("perceptual", "mse", "true_edit_perceptual", "true_edit_mse")}
    # the true codes unedited, rendered as the sweep renders alpha = 0 (the reference of every true edit)
    _, _, _, truth_unedited = next(
        edit_sweep(truth, space, generator, next(iter(families.values())), alphas=(0.0,), **render)
    )
    split = hasattr(distance, "features") and hasattr(distance, "between")
    reference_features = distance.features(truth_unedited) if split else None

    def from_features(mine: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(edit error, true edit's size) [N] of one render, the trunk run once on each image."""
        mine_features, right_features = distance.features(mine), distance.features(right)
        return distance.between(mine_features, right_features), distance.between(right_features, reference_features)

    def flush() -> None:  # scores the pending pairs: keeping every edit of a sweep would take GBs at 1024 px
        mine, right = torch.cat([p[0] for p in pending]), torch.cat([p[1] for p in pending])
        reference = truth_unedited.repeat(len(pending), 1, 1, 1)
        if split:  # a render at a time: the features of a whole flush would take GBs at 256 px
            edits, sizes = (torch.cat(column) for column in zip(*(from_features(*pair) for pair in pending)))
        else:
            edits, sizes = distance(mine, right), distance(right, reference)
        scores["perceptual"].append(edits.double().cpu().numpy())
        scores["mse"].append(per_image_mse(mine, right))
        scores["true_edit_perceptual"].append(sizes.double().cpu().numpy())
        scores["true_edit_mse"].append(per_image_mse(right, reference))
        pending.clear()

    for family, directions in families.items():
        sweeps = zip(
            edit_sweep(inverted, space, generator, directions, alphas=alphas, **render),
            edit_sweep(truth, space, generator, directions, alphas=alphas, **render),
        )
        for (name, alpha, _, mine), (_, _, _, right) in sweeps:
            if alpha == 0:
                if unedited is not None:
                    continue  # alpha = 0 is the inversion whatever the direction: scored once, copied below
                unedited = len(keys)
            keys.append((family, name, alpha))
            pending.append((mine, right))
            if len(pending) * n >= distance_batch:
                flush()
    if pending:
        flush()
    scores = {name: np.concatenate(values).reshape(len(keys), n) for name, values in scores.items()}
    scored = {key: k for k, key in enumerate(keys)}
    rows = []
    for family, directions in families.items():
        for name in directions.names:
            for alpha in alphas:
                k = unedited if float(alpha) == 0 and unedited is not None else scored[(family, name, float(alpha))]
                rows.append(
                    pd.DataFrame(
                        dict(
                            space=space.name,
                            family=family,
                            direction=name,
                            image_id=list(image_ids),
                            alpha=float(alpha),
                            **{score: values[k] for score, values in scores.items()},
                        )
                    )
                )
    return pd.concat(rows, ignore_index=True)


@torch.no_grad()
def true_code_gap(
    truth: dict[str, torch.Tensor],
    space,
    generator,
    samples: torch.Tensor,
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> np.ndarray:
    """[N] MSE between the true codes' image and the sample itself: 0 for standalone spaces (up to round-off),
    the lost RGB skip for F spaces."""
    from fzplus.inversion import render

    image = render(truth, generator, space, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff).clamp(
        -1, 1
    )
    return per_image_mse(image, samples)


__all__ = ["ground_truth_samples", "true_codes", "edit_fidelity", "true_code_gap", "per_image_mse"]
