"""Offline attribute labeller for generated faces, from dlib's 68 facial landmarks.

Used to label samples of the mini generator so that InterFaceGAN directions can be fitted offline
(SPEC §7). Scores are continuous and scale-free (ratios of landmark distances; `d` is the inter-ocular
distance between the two eye centres; dlib's 0-based landmark indices):
  mouth_open: mean inner-lip gap |61-67|, |62-66|, |63-65| over d (0 = closed).
  smile:      mouth width |48-54| over d (wider when smiling).
  yaw:        offset of the nose tip (30) from the eye midpoint along the eye axis, over d. Positive
              when the nose tip lies right of the eye midpoint in the image (the face turned towards the
              image's right); a mirrored image gives the opposite sign.
  eyes_open:  eye aspect ratio (|p1-p5| + |p2-p4|) / (2 |p0-p3|) per eye (points 36-41, 42-47), mean of both.

Detection: dlib's HOG frontal-face detector on the image upsampled to at least `min_size` pixels (it
misses faces below ~80 px; the mini generator makes 64 px images). When it finds none, landmarks are
taken from the full-image rectangle (the images are aligned crops) and the row says `detected=False`,
so a caller can filter or count. When it finds several, the largest box is used.

Detection and the dlib models are fzplus.faces.landmarks, shared with the face aligner, the face parser and
the dlib identity backend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fzplus.faces.landmarks import LocatedFaces, load_dlib_model, locate_faces

ATTRIBUTES = ("mouth_open", "smile", "yaw", "eyes_open")


def landmark_scores(points: np.ndarray) -> dict[str, float]:
    """The four scores from 68 landmarks [68, 2] (x, y in pixels)."""
    assert points.shape == (68, 2), points.shape
    dist = lambda a, b: float(np.linalg.norm(points[a] - points[b]))  # noqa: E731
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    interocular = float(np.linalg.norm(right_eye - left_eye))
    axis = (right_eye - left_eye) / interocular

    def eye_aspect_ratio(p0: int) -> float:
        return (dist(p0 + 1, p0 + 5) + dist(p0 + 2, p0 + 4)) / (2 * dist(p0, p0 + 3))

    return dict(
        mouth_open=(dist(61, 67) + dist(62, 66) + dist(63, 65)) / 3 / interocular,
        smile=dist(48, 54) / interocular,
        yaw=float(np.dot(points[30] - (left_eye + right_eye) / 2, axis)) / interocular,
        eyes_open=(eye_aspect_ratio(36) + eye_aspect_ratio(42)) / 2,
    )


def label_attributes(
    images, *, min_size: int = 256, progress: bool = True, faces: LocatedFaces | None = None
) -> pd.DataFrame:
    """One row per image: `image` (0-based position), `detected`, and the ATTRIBUTES scores.
    faces: the images' faces already located (`locate_faces`); `images` is then ignored."""
    predictor = load_dlib_model("landmarks_68")
    faces = locate_faces(images, min_size=min_size) if faces is None else faces
    rows = []
    for index, (image, box) in enumerate(
        tqdm(list(zip(faces.images, faces.boxes)), desc="labelling attributes", disable=not progress, leave=False)
    ):
        shape = predictor(image, box)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        rows.append(dict(image=index, detected=bool(faces.detected[index]), **landmark_scores(points)))
    return pd.DataFrame(rows, columns=["image", "detected", *ATTRIBUTES])


__all__ = ["ATTRIBUTES", "label_attributes", "landmark_scores"]
