"""Offline attribute labeller: landmark geometry, mirror behaviour on a real face, no-face fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from fzplus.edits.attributes import ATTRIBUTES, label_attributes, landmark_scores
from fzplus.faces.landmarks import as_uint8_images

TURNED_FACE = "083510.jpg"  # a CelebA-HQ face of the mirror with the head visibly turned


def synthetic_landmarks(*, eye_height: float, lip_gap: float, nose_x: float) -> np.ndarray:
    """68 points with eye centres at (-1, 0) and (1, 0) (inter-ocular distance 2), mouth corners at (-1, 2)
    and (1, 2), the nose tip at (nose_x, 1); every other point at the origin."""
    p = np.zeros((68, 2))
    for start, cx in ((36, -1.0), (42, 1.0)):
        p[start : start + 6] = [
            [cx - 0.5, 0],
            [cx - 0.2, -eye_height],
            [cx + 0.2, -eye_height],
            [cx + 0.5, 0],
            [cx + 0.2, eye_height],
            [cx - 0.2, eye_height],
        ]
    p[48], p[54], p[30] = [-1, 2], [1, 2], [nose_x, 1]
    for top, bottom, x in ((61, 67, -0.3), (62, 66, 0.0), (63, 65, 0.3)):
        p[top], p[bottom] = [x, 2 - lip_gap / 2], [x, 2 + lip_gap / 2]
    return p


def test_landmark_scores_known_geometry_and_similarity_invariance():
    points = synthetic_landmarks(eye_height=0.15, lip_gap=0.4, nose_x=0.5)
    scores = landmark_scores(points)
    assert scores["eyes_open"] == pytest.approx(2 * 0.15)  # (2h + 2h) / (2 * eye width 1)
    assert scores["mouth_open"] == pytest.approx(0.4 / 2)  # lip gap over inter-ocular distance
    assert scores["smile"] == pytest.approx(2 / 2)
    assert scores["yaw"] == pytest.approx(0.5 / 2)
    # Ratios along the eye axis: rotating, scaling and moving the face changes nothing.
    angle = math.radians(25)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = landmark_scores(3.0 * points @ rotation.T + [40.0, 17.0])
    for name in ATTRIBUTES:
        assert moved[name] == pytest.approx(scores[name])
    assert landmark_scores(synthetic_landmarks(eye_height=0.15, lip_gap=0.4, nose_x=-0.5))["yaw"] == pytest.approx(
        -0.25
    )


def test_yaw_flips_sign_for_the_mirror_image(mirror):
    picture = Image.open(mirror / "celebahq-stargan-v2" / TURNED_FACE).convert("RGB").resize((64, 64), Image.LANCZOS)
    face = np.asarray(picture)
    table = label_attributes(np.stack([face, face[:, ::-1]]), progress=False)
    assert list(table.columns) == ["image", "detected", *ATTRIBUTES] and list(table.image) == [0, 1]
    assert table.detected.all()
    yaw, yaw_mirrored = table.yaw
    assert min(abs(yaw), abs(yaw_mirrored)) > 0.1 and np.sign(yaw) == -np.sign(yaw_mirrored)
    # Mirror-symmetric attributes stay close (dlib's predictor is not exactly mirror-equivariant).
    for name in ("mouth_open", "smile", "eyes_open"):
        assert table[name][1] == pytest.approx(table[name][0], rel=0.25, abs=0.02)


def test_no_face_is_reported_undetected_with_full_frame_scores():
    coffee = np.asarray(Image.fromarray(skimage.data.coffee()).resize((64, 64), Image.LANCZOS))
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    table = label_attributes([coffee, noise], progress=False)
    assert not table.detected.any()
    assert np.isfinite(table[list(ATTRIBUTES)].to_numpy()).all()


def test_image_formats_convert_consistently():
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    as_float = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
    for converted in (as_uint8_images(as_float), as_uint8_images(list(images)), as_uint8_images(images)):
        np.testing.assert_array_equal(np.stack(converted), images)
    assert as_uint8_images(images[0])[0].shape == (8, 8, 3)
    with pytest.raises(ValueError, match="uint8"):
        as_uint8_images(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        as_uint8_images(as_float * 127.5)
