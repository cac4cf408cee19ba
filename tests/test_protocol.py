"""The editing protocol: identity_sweep scores every (family, direction, alpha, image) exactly as scoring each
edit on its own would, while embedding the alpha = 0 faces once per image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.metrics.edit_identity import identity_sweep
from benchmarks.metrics.identity import IdentityBackend, identity_similarity
from conftest import make_tiny_generator
from fzplus.edits.directions import Directions
from fzplus.edits.protocol import edit_sweep
from fzplus.inversion import invert


class PooledPixels(IdentityBackend):
    """A face embedder stand-in: 4x4 average-pooled pixels; counts the images it embeds."""

    name = "pooled-pixels"
    on_undetected = "full-frame"

    def __init__(self):
        self.embedded = 0

    def embed(self, images):
        self.embedded += len(images)
        pooled = torch.nn.functional.avg_pool2d(torch.as_tensor(images, dtype=torch.float64), 8)
        return pooled.flatten(1).numpy() + 2.0, np.ones(len(images), bool)


@pytest.fixture(scope="module")
def inverted():
    generator = make_tiny_generator()
    targets = make_tiny_generator(seed=1)(torch.randn(3, 512, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    codes = invert(targets, generator, "F/Z+", steps=2, perceptual=None, progress=False, base_size=8).codes
    return generator, targets, codes


def families(seed: int = 0) -> dict[str, Directions]:
    vectors = torch.randn(2, 512, generator=torch.Generator().manual_seed(seed))
    return {"random": Directions(vectors=vectors, domain="Z", names=("d0", "d1"), method="random", unit=False)}


@pytest.mark.parametrize("batch_size", [2, 64])
def test_sweep_equals_scoring_each_edit_alone_and_embeds_alpha_zero_once(inverted, batch_size):
    import spaces

    generator, targets, codes = inverted
    space, alphas, ids = spaces.get("F/Z+"), (-1.0, 0.0, 1.0), ["a", "b", "c"]
    backend = PooledPixels()
    table, _ = identity_sweep(
        targets, ids, codes, space, generator, families(), backend, alphas=alphas, batch_size=batch_size, progress=False
    )
    # 3 targets, then per image: 2 directions x 2 non-zero alphas + one alpha = 0 face
    assert backend.embedded == 3 + 3 * (2 * 2 + 1)

    reference = []
    for name, alpha, part, images in edit_sweep(
        codes, space, generator, families()["random"], alphas=alphas, batch_size=batch_size
    ):
        scores = identity_similarity(PooledPixels(), targets[part], images)
        reference.append(scores.assign(direction=name, alpha=alpha, image_id=ids[part]))
    reference = pd.concat(reference, ignore_index=True)
    key = ["direction", "alpha", "image_id"]
    merged = table.merge(reference, on=key, suffixes=("", "_alone"), validate="one_to_one")
    assert len(merged) == len(table) == 2 * 3 * 3
    np.testing.assert_array_equal(merged.similarity, merged.similarity_alone)
    np.testing.assert_array_equal(merged.distance, merged.distance_alone)
    assert merged.query("alpha != 0").similarity.lt(1.0 - 1e-9).all()  # the edits do move the faces
