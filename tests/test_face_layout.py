"""The face-layout benchmark's crop fit: a planted centred crop is recovered."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.studies.face_layout import centred_crop_fit


@pytest.mark.parametrize("crop", [0.6, 0.79, 1.0])
def test_centred_crop_fit_recovers_a_planted_crop(crop):
    generated = np.array([[0.35, 0.47], [0.65, 0.46], [0.50, 0.82]])
    targets = 0.5 + (generated - 0.5) * crop  # faces `crop` times the generator's size, centred
    assert centred_crop_fit(targets, generated) == pytest.approx(crop, rel=1e-12)
    noisy = targets + np.random.default_rng(0).normal(0, 0.002, targets.shape)
    assert centred_crop_fit(noisy, generated) == pytest.approx(crop, abs=0.02)
