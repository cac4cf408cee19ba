"""An offline face parser from dlib's 68 landmarks: the stand-in for SAM's BiSeNet face parser.

SAM (Parmar et al. 2022, adobe-research/sam_inversion) picks one latent per semantic segment, segments
from a BiSeNet trained on CelebAMask-HQ, whose weights cannot be had offline. Here the segments are
polygons of dlib's 68 landmarks (0-based indices), drawn in this order so that a later part overwrites an
earlier one and every pixel has exactly one label:

  0 background_hair  everything not below (hair, neck, clothes, background: landmarks do not separate them)
  1 skin             the face outline: the convex hull of the jaw line (0-16) and the brows (17-26)
  2 eyes_brows       each eye's polygon (36-41, 42-47) and each brow (17-21, 22-26) as a thick line
  3 nose             the convex hull of the nose bridge and base (27-35)
  4 mouth            the outer lip polygon (48-59)

What differs from BiSeNet: hair is not told from the background, there are no ears, neck, glasses or hat
classes, and the parts are convex-ish polygons, not pixel-accurate outlines. A face dlib's HOG detector
misses is parsed from landmarks predicted in the full-image box (the targets are aligned crops, as
fzplus.edits.attributes does), and reported with detected=False.

A real parser plugs in by registering a function images -> (labels, detected) under a name
(`register_parser`) and naming it in the config (`inversion.sam.parser`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw

SEGMENTS = ("background_hair", "skin", "eyes_brows", "nose", "mouth")
DETECTION_SIZE = 256  # the HOG detector's working size (it misses faces below ~80 px)


class FaceSegments(NamedTuple):
    labels: torch.Tensor  # [N, R, R] int64, values index SEGMENTS
    detected: np.ndarray  # [N] bool: the HOG detector found the face (else: landmarks from the full-image box)


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Convex hull (monotone chain) of points [k, 2], as a polygon."""
    pts = sorted(map(tuple, points.tolist()))

    def half(seq):
        out: list[tuple[float, float]] = []
        for p in seq:
            while (
                len(out) >= 2
                and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])
                <= 0
            ):
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return lower[:-1] + upper[:-1]


def draw_segments(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Label map [size, size] uint8 of one face from its 68 landmarks [68, 2] (x, y in this map's pixels)."""
    assert landmarks.shape == (68, 2), f"need dlib's 68 landmarks [68, 2], got {landmarks.shape}"
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    poly = lambda idx: [tuple(p) for p in landmarks[idx].tolist()]  # noqa: E731
    draw.polygon(_hull(landmarks[0:27]), fill=SEGMENTS.index("skin"))
    eyes_brows = SEGMENTS.index("eyes_brows")
    brow_width = max(1, round(0.04 * float(np.ptp(landmarks[:, 0]))))
    for brow in (range(17, 22), range(22, 27)):
        draw.line(poly(list(brow)), fill=eyes_brows, width=brow_width)
    for eye in (range(36, 42), range(42, 48)):
        draw.polygon(poly(list(eye)), fill=eyes_brows)
    draw.polygon(_hull(landmarks[27:36]), fill=SEGMENTS.index("nose"))
    draw.polygon(poly(list(range(48, 60))), fill=SEGMENTS.index("mouth"))
    return np.asarray(canvas)


def landmark_parser(images: torch.Tensor) -> FaceSegments:
    """Segments of images [N, 3, R, R] in [-1, 1]: dlib landmarks on a 256 px copy, polygons drawn at R."""
    from fzplus.faces.landmarks import load_dlib_model, locate_faces

    assert images.ndim == 4 and images.shape[1] == 3 and images.shape[2] == images.shape[3], (
        f"images must be square [N, 3, R, R], got {tuple(images.shape)}"
    )
    size = images.shape[-1]
    faces = locate_faces(images.detach().cpu(), min_size=DETECTION_SIZE)
    predictor = load_dlib_model("landmarks_68")
    labels = []
    for pixels, box in zip(faces.images, faces.boxes):
        shape = predictor(pixels, box)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        scale = size / pixels.shape[0]
        labels.append(draw_segments((points + 0.5) * scale - 0.5, size))
    return FaceSegments(torch.from_numpy(np.stack(labels).astype(np.int64)), faces.detected)


PARSERS: dict[str, Callable[[torch.Tensor], FaceSegments]] = {"dlib-landmarks": landmark_parser}


def register_parser(name: str, parser: Callable[[torch.Tensor], FaceSegments]) -> None:
    if name in PARSERS:
        raise ValueError(f"a face parser named {name!r} is already registered")
    PARSERS[name] = parser


def parse_faces(images: torch.Tensor, *, parser: str = "dlib-landmarks") -> FaceSegments:
    if parser not in PARSERS:
        raise KeyError(
            f"unknown face parser {parser!r}; known: {sorted(PARSERS)} (register one with "
            "fzplus.faces.parsing.register_parser)"
        )
    return PARSERS[parser](images)


__all__ = ["FaceSegments", "PARSERS", "SEGMENTS", "draw_segments", "landmark_parser", "parse_faces", "register_parser"]
