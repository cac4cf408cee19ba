"""FFHQ-style alignment of unaligned photos (targets.align: ffhq): the quad's geometry, alignment that undoes
a photo's framing, scale and rotation, and the errors and records of the targets stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fzplus.faces.alignment import align_face, face_landmarks, ffhq_quad
from fzplus.targets import TargetImageError, prepare_targets

PHOTO = "celebahq-stargan-v2/015248.jpg"


def feature_points(pixels: np.ndarray) -> np.ndarray:
    """[3, 2] left eye, right eye and mouth centre, as fractions of the (square) image's side."""
    lm = face_landmarks(pixels)
    assert lm is not None, "no face found"
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), (lm[48] + lm[54]) / 2]) / pixels.shape[0]


def frontal_landmarks(*, eye_distance: float = 20.0, mouth_drop: float = 20.0) -> np.ndarray:
    """68 points with the eyes and mouth corners where ffhq_quad reads them (the rest at the origin)."""
    lm = np.zeros((68, 2))
    lm[36:42] = (40.0, 50.0)
    lm[42:48] = (40.0 + eye_distance, 50.0)
    lm[48], lm[54] = (42.0, 50.0 + mouth_drop), (38.0 + eye_distance, 50.0 + mouth_drop)
    return lm


def moved(
    photo: Image.Image, *, scale: float, degrees: float, canvas: tuple[int, int], at: tuple[int, int]
) -> np.ndarray:
    """The photo rescaled, rotated and pasted off-centre on a non-square canvas."""
    side = round(photo.width * scale)
    turned = photo.resize((side, side), Image.BICUBIC).rotate(
        degrees, resample=Image.BICUBIC, expand=True, fillcolor=(128, 120, 110)
    )
    out = Image.new("RGB", canvas, (90, 100, 110))
    out.paste(turned, at)
    return np.asarray(out)


def test_quad_of_an_upright_face_is_the_ffhq_square():
    quad = ffhq_quad(frontal_landmarks())
    centre = np.array([50.0, 50.0]) + 0.1 * np.array([0.0, 20.0])  # eye centre + 0.1 eye-to-mouth
    half = max(2.0 * 20, 1.8 * 20)  # FFHQ's x: max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)
    expected = centre + half * np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]])  # tl, bl, br, tr
    np.testing.assert_allclose(quad, expected, atol=1e-9)
    # a long face: the eye-to-mouth term sets the size
    long_face = ffhq_quad(frontal_landmarks(mouth_drop=40))
    assert np.hypot(*(long_face[3] - long_face[0])) == pytest.approx(2 * 1.8 * 40)


def test_quad_turns_and_scales_with_the_face():
    lm, angle, scale, shift = frontal_landmarks(), np.deg2rad(25), 1.7, np.array([13.0, -7.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved_quad = ffhq_quad(lm @ rotation.T * scale + shift)
    np.testing.assert_allclose(moved_quad, ffhq_quad(lm) @ rotation.T * scale + shift, atol=1e-9)


def test_alignment_undoes_framing_scale_and_rotation(mirror):
    photo = Image.open(mirror / PHOTO).convert("RGB").resize((400, 400), Image.LANCZOS)
    reference = align_face(np.asarray(photo))
    for scale, degrees, canvas, at in ((1.3, 17.0, (900, 640), (40, 60)), (0.8, -12.0, (500, 700), (150, 290))):
        aligned = align_face(moved(photo, scale=scale, degrees=degrees, canvas=canvas, at=at))
        assert aligned.pixels.shape[0] == aligned.pixels.shape[1]
        error = np.abs(feature_points(aligned.pixels) - feature_points(reference.pixels)).max()
        assert error < 0.02, f"eyes/mouth moved by {error:.3f} of the side (scale {scale}, {degrees} deg)"
    # ... and the eyes sit level, where FFHQ puts them: the upper half, symmetric about the centre
    eyes = feature_points(reference.pixels)[:2]
    assert (
        abs(eyes[0, 1] - eyes[1, 1]) < 0.02 and 0.35 < eyes[:, 1].mean() < 0.55 and abs(eyes[:, 0].mean() - 0.5) < 0.02
    )


def test_targets_stage_aligns_photos_and_records_the_quad(mirror, tmp_path):
    photo = Image.open(mirror / PHOTO).convert("RGB").resize((300, 300), Image.LANCZOS)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(moved(photo, scale=1.2, degrees=10.0, canvas=(700, 520), at=(200, 30))).save(
        folder / "holiday.jpg", quality=95
    )
    with pytest.raises(TargetImageError, match="holiday.jpg.*not square.*targets.align: ffhq"):
        prepare_targets(folder, tmp_path / "plain", resolution=32)
    table = prepare_targets(folder, tmp_path / "out", resolution=32, align="ffhq")
    assert (
        table.alignment[0].startswith("ffhq quad (tl bl br tr) ") and table.width[0] == 700 and table.height[0] == 520
    )
    corners = np.array(
        [[float(v) for v in c.split(",")] for c in table.alignment[0].split(") ")[1].split(" -> ")[0].split()]
    )
    assert (
        corners.shape == (4, 2) and (corners[:, 0].mean() > 200) and (corners[:, 1].mean() > 30)
    )  # the face's place in the photo
    assert Image.open(tmp_path / "out" / "images" / "holiday.png").size == (32, 32)
    assert pd.read_csv(tmp_path / "out" / "targets.csv").alignment[0] == table.alignment[0]


def test_a_photo_without_a_face_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (300, 200), (128, 128, 128)).save(folder / "wall.png")
    Image.new("RGB", (300, 200), (30, 60, 90)).save(folder / "sky.png")
    with pytest.raises(
        TargetImageError, match=r"(?s)2 of 2 .*sky\.png: no face found to align.*wall\.png: no face found"
    ) as caught:
        prepare_targets(folder, tmp_path / "out", resolution=32, align="ffhq")
    assert "targets.align: null" in str(caught.value)
    assert not (tmp_path / "out").exists()  # nothing half-written
