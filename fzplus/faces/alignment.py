"""FFHQ-style face alignment of unaligned photos (`targets.align: ffhq`).

The geometry is that of the FFHQ dataset's own alignment (Karras et al. 2019, ffhq-dataset): from dlib's 68
landmarks take the eye centres (points 36-41 and 42-47) and the mouth corners (48, 54);

    eye_to_eye   = eye_right - eye_left          eye_to_mouth = mouth_centre - eye_centre
    x = eye_to_eye - rot90(eye_to_mouth), normalised, scaled to max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)
    y = rot90(x)                                 centre = eye_centre + 0.1 eye_to_mouth

and the crop is the square quad centre -+ x -+ y, which is rotated upright and resampled to the output.
So the eyes and mouth of every aligned face land at the same places, whatever the photo's framing, scale
and in-plane rotation. Where the quad leaves the photo, the photo is mirrored outwards (FFHQ also mirrors,
then blurs the mirrored band towards the image's median colour; that feathering is not reproduced here).

    aligned = align_face(pixels, name="me.jpg")   # FaceAlignment(pixels [S, S, 3] uint8, quad [4, 2])
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

ALIGNMENTS = ("ffhq",)
MAX_OUTPUT = 1024  # FFHQ's own size; larger quads are resampled down to it
DETECTION_MIN_SIZE, DETECTION_MAX_SIZE = 256, 640  # the HOG detector's working copy (see face_landmarks)


class NoFaceFound(ValueError):
    """dlib found no face to align in a photo."""


@dataclasses.dataclass(frozen=True)
class FaceAlignment:
    pixels: np.ndarray  # [S, S, 3] uint8, the aligned crop
    quad: (
        np.ndarray
    )  # [4, 2] float: the crop's corners in the photo (x, y pixels): top-left, bottom-left, bottom-right, top-right
    landmarks: np.ndarray  # [68, 2] float, in the photo

    def describe(self) -> str:
        """The transform as targets.csv records it: the quad's corners in source pixels."""
        corners = " ".join(f"{x:.2f},{y:.2f}" for x, y in self.quad)
        return f"ffhq quad (tl bl br tr) {corners} -> {self.pixels.shape[0]} px"


def face_landmarks(pixels: np.ndarray) -> np.ndarray | None:
    """[68, 2] landmarks (x, y in the photo's pixels) of the largest face dlib's HOG detector finds in an RGB
    uint8 photo [H, W, 3], or None when it finds none. The detector runs on a copy scaled to 256..640 px
    (a 1024 px photo took 2.2 s at full size, 0.06 s at 256), the landmarks on the photo itself."""
    import dlib

    from fzplus.faces.landmarks import hog_face_detector, load_dlib_model

    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    factor = min(DETECTION_MAX_SIZE / max(h, w), max(1.0, DETECTION_MIN_SIZE / min(h, w)))
    scaled = (
        pixels
        if factor == 1
        else np.asarray(Image.fromarray(pixels).resize((round(w * factor), round(h * factor)), Image.BICUBIC))
    )
    boxes = hog_face_detector()(
        scaled, 0
    )  # faces of >= ~80 px of the copy; only then the 4x slower search for smaller ones
    boxes = boxes if len(boxes) else hog_face_detector()(scaled, 1)
    if not len(boxes):
        return None
    box = max(boxes, key=lambda r: r.area())
    box = dlib.rectangle(*(round(v / factor) for v in (box.left(), box.top(), box.right(), box.bottom())))
    shape = load_dlib_model("landmarks_68")(pixels, box)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad [4, 2] (top-left, bottom-left, bottom-right, top-right) of 68 landmarks [68, 2]."""
    assert landmarks.shape == (68, 2), f"need dlib's 68 landmarks [68, 2], got {landmarks.shape}"
    eye_left, eye_right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    eye_centre, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    mouth_centre = (landmarks[48] + landmarks[54]) / 2
    eye_to_mouth = mouth_centre - eye_centre
    rot90 = lambda v: np.array([-v[1], v[0]])  # noqa: E731  (FFHQ's flipud(v) * [-1, 1])
    x = eye_to_eye - rot90(eye_to_mouth)
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = rot90(x)
    centre = eye_centre + eye_to_mouth * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def quad_side(quad: np.ndarray) -> float:
    """Side length in pixels of a square quad [4, 2] (top edge)."""
    return float(np.hypot(*(quad[3] - quad[0])))


def warp_quad(pixels: np.ndarray, quad: np.ndarray, *, size: int) -> np.ndarray:
    """Resample the quad [4, 2] of an RGB photo [H, W, 3] uint8 onto an upright square of `size` px: mirror
    padding where the quad leaves the photo, box pre-shrinking where it is more than 2x the output (the
    bicubic warp alone would alias)."""
    shrink = max(1, int(quad_side(quad) / size / 2))
    if shrink > 1:
        h, w = pixels.shape[:2]
        pixels = np.asarray(Image.fromarray(pixels).reduce(shrink))
        quad = quad * np.array([pixels.shape[1] / w, pixels.shape[0] / h])
    h, w = pixels.shape[:2]
    margin = 4  # bicubic taps beyond the quad's edge
    left = int(max(0, np.ceil(-quad[:, 0].min())) + margin)
    top = int(max(0, np.ceil(-quad[:, 1].min())) + margin)
    right = int(max(0, np.ceil(quad[:, 0].max() - (w - 1))) + margin)
    bottom = int(max(0, np.ceil(quad[:, 1].max() - (h - 1))) + margin)
    padded = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    shifted = quad + np.array([left, top])
    # PIL's QUAD data: the source corners mapped to the output's upper-left, lower-left, lower-right, upper-right
    warped = Image.fromarray(padded).transform(
        (size, size), Image.Transform.QUAD, data=tuple((shifted + 0.5).ravel()), resample=Image.Resampling.BICUBIC
    )
    return np.asarray(warped)


def align_face(
    pixels: np.ndarray, *, name: str = "image", method: str = "ffhq", output_size: int | None = None
) -> FaceAlignment:
    """Align the largest face of an RGB photo [H, W, 3] uint8. output_size: the crop's side in pixels;
    default the quad's own side (no upsampling of the photo's detail), at most 1024. Raises NoFaceFound
    naming `name` when dlib finds no face."""
    if method not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {method!r}; known: {list(ALIGNMENTS)}")
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3, (
        f"need RGB uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}"
    )
    landmarks = face_landmarks(pixels)
    if landmarks is None:
        raise NoFaceFound(
            f"{name}: no face found to align (dlib's HOG detector, frontal faces of at least ~40 px); "
            "use a photo with one visible, roughly frontal face, or pass an aligned crop with targets.align: null"
        )
    quad = ffhq_quad(landmarks)
    size = output_size or int(min(MAX_OUTPUT, round(quad_side(quad))))
    return FaceAlignment(pixels=warp_quad(pixels, quad, size=size), quad=quad, landmarks=landmarks)


__all__ = ["ALIGNMENTS", "FaceAlignment", "NoFaceFound", "align_face", "face_landmarks", "ffhq_quad", "warp_quad"]
