"""dlib on face images: its model files (from the PyPI package face_recognition_models), HOG face detection on
upsampled images, and the faces located once and shared by every dlib user (the attribute labeller
fzplus.edits.attributes, the aligner fzplus.faces.alignment, the parser fzplus.faces.parsing and the dlib
identity backend).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import pathlib

import numpy as np
import torch
from PIL import Image

from fzplus.images import to_uint8

DLIB_MODELS = {  # files shipped in the PyPI package face_recognition_models (CC0)
    "landmarks_68": "shape_predictor_68_face_landmarks.dat",
    "landmarks_5": "shape_predictor_5_face_landmarks.dat",
    "face_recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
}


def dlib_model_location(name: str) -> pathlib.Path:
    """Path of a dlib model file from face_recognition_models. Found without importing that package: its
    __init__ needs pkg_resources, which current setuptools no longer ships."""
    if name not in DLIB_MODELS:
        raise KeyError(f"unknown dlib model {name!r}; known: {sorted(DLIB_MODELS)}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "dlib models need the package face-recognition-models==0.3.0 (pip install face-recognition-models)"
        )
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / DLIB_MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(f"dlib model file {str(path)!r} is missing; reinstall face-recognition-models")
    return path


@functools.cache
def load_dlib_model(name: str):
    """The dlib object for a model name (cached: the 68-point predictor takes ~1 s to load)."""
    import dlib

    path = str(dlib_model_location(name))
    loaders = {
        "landmarks_68": dlib.shape_predictor,
        "landmarks_5": dlib.shape_predictor,
        "face_recognition": dlib.face_recognition_model_v1,
        "cnn_detector": dlib.cnn_face_detection_model_v1,
    }
    return loaders[name](path)


@functools.cache
def hog_face_detector():
    import dlib

    return dlib.get_frontal_face_detector()


def as_uint8_images(images) -> list[np.ndarray]:
    """Images -> list of uint8 RGB arrays [H, W, 3]. Accepts a float tensor [N, 3, H, W] in [-1, 1] (the
    generator's output; clamped), a uint8 tensor [N, 3, H, W], a uint8 array [N, H, W, 3] or [H, W, 3],
    or a list of uint8 [H, W, 3] arrays."""
    if isinstance(images, torch.Tensor):
        return list(to_uint8(images))
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    arrays = list(images)
    for i, a in enumerate(arrays):
        if not (isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3):
            raise ValueError(
                f"image {i}: numpy images must be uint8 [H, W, 3], got "
                f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}"
            )
    return [np.ascontiguousarray(a) for a in arrays]


def upsample(image: np.ndarray, *, min_size: int) -> np.ndarray:
    """Bicubic upsampling so that the shorter side is at least `min_size`; larger images are unchanged."""
    h, w = image.shape[:2]
    if min(h, w) >= min_size:
        return image
    scale = min_size / min(h, w)
    return np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BICUBIC))


def locate_face(image: np.ndarray):
    """(dlib.rectangle, detected): the largest HOG detection, or the full-image rectangle and False."""
    import dlib

    boxes = hog_face_detector()(image, 0)
    if len(boxes):
        return max(boxes, key=lambda r: r.area()), True
    return dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1), False


@dataclasses.dataclass(frozen=True)
class LocatedFaces:
    """Faces found once and shared by the landmark labeller and the dlib identity backend (the HOG detector
    is a third of a face embedding's time). images: the upsampled uint8 arrays the boxes refer to."""

    images: list[np.ndarray]
    boxes: list
    detected: np.ndarray  # [N] bool
    min_size: int


def locate_faces(images, *, min_size: int = 256) -> LocatedFaces:
    """Upsample each image to at least `min_size` px and locate its face (`locate_face`)."""
    upsampled = [upsample(image, min_size=min_size) for image in as_uint8_images(images)]
    located = [locate_face(image) for image in upsampled]
    return LocatedFaces(
        images=upsampled,
        boxes=[box for box, _ in located],
        detected=np.array([found for _, found in located], dtype=bool),
        min_size=min_size,
    )
