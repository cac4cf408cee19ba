"""Identity similarity between target faces and edited faces (paper §4, Fig. 6), with pluggable face embedders.

A backend turns images into face embeddings: `embed(images) -> (embeddings [N, D] float64, detected [N]
bool)`. `detected` says whether the backend's face detector found a face. What happens when it did not
is the backend's `on_undetected` policy:
  "full-frame": embed the whole image as the face crop (the images are aligned crops; SPEC §12 measured
                that this works for dlib on 64 px crops); the row still says detected=False.
  "skip":       the embedding row is NaN, so the similarity is NaN.
Either way undetected faces are counted and reported by `identity_similarity`, never dropped.

Backends (one module `<name>_backend.py` each, discovered at import):
  dlib:    offline; HOG detector, 5-point landmarks, dlib.get_face_chip, ResNet 128-d (mini profile).
  facenet: facenet-pytorch MTCNN + InceptionResnetV1 (VGGFace2), the paper's choice (paper profile).

Functional use:
    backend = make_identity_backend("dlib")
    table = identity_similarity(backend, targets, edited)   # one row per pair
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pandas as pd

UNDETECTED_POLICIES = ("full-frame", "skip")


def check_undetected_policy(value: str) -> str:
    if value not in UNDETECTED_POLICIES:
        raise ValueError(f"on_undetected must be one of {UNDETECTED_POLICIES}, got {value!r}")
    return value


class IdentityBackend(abc.ABC):
    """A face embedder. Subclasses set `name` and implement `embed`."""

    name: ClassVar[str]
    on_undetected: str
    # True when embed(images, faces=LocatedFaces) accepts faces located by fzplus.faces.landmarks.locate_faces
    # (an editing sweep that also labels attributes then runs the face detector once per image).
    shares_face_location: ClassVar[bool] = False

    @abc.abstractmethod
    def embed(self, images) -> tuple[np.ndarray, np.ndarray]:
        """images (see fzplus.faces.landmarks.as_uint8_images) -> (embeddings [N, D] float64, detected [N] bool).
        Rows of undetected faces are NaN under on_undetected="skip"."""


@dataclasses.dataclass(frozen=True)
class IdentityBackendEntry:
    name: str
    factory: Callable[..., IdentityBackend]
    description: str


_REGISTRY: dict[str, IdentityBackendEntry] = {}


def register_identity_backend(*, name: str, factory: Callable[..., IdentityBackend], description: str) -> None:
    """Add a backend. Clear errors on a duplicate name or a missing field."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"identity backend needs a non-empty string name, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"identity backend {name!r} is registered twice; rename one")
    if not callable(factory):
        raise TypeError(f"identity backend {name!r}: factory must be callable")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"identity backend {name!r}: a one-line description is required")
    _REGISTRY[name] = IdentityBackendEntry(name=name, factory=factory, description=description.strip())


def identity_backends() -> dict[str, IdentityBackendEntry]:
    return dict(_REGISTRY)


def make_identity_backend(name: str, **kwargs) -> IdentityBackend:
    """Build a registered backend with its keyword options (e.g. on_undetected, weights)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown identity backend {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name].factory(**kwargs)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of [N, D] and [N, D] (or [1, D], broadcast) -> [N]; NaN rows stay NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def identity_similarity(
    backend: IdentityBackend,
    targets,
    edited,
    *,
    embedded_targets: tuple | None = None,
    embedded_edited: tuple | None = None,
) -> pd.DataFrame:
    """Cosine similarity of face embeddings, pair by pair.

    targets: N images, or 1 image compared with every edited image. edited: N images.
    embedded_targets: `backend.embed(targets)` computed once by the caller (an editing sweep compares the
    same targets with hundreds of edits); `targets` is then ignored. embedded_edited: likewise for `edited`.
    Returns one row per pair: `pair` (0-based position in `edited`), `similarity` (cosine, the paper's
    measure; NaN where a face was not detected and the backend skips such faces), `distance` (Euclidean,
    dlib's native measure: its cosines are compressed, about 0.83 between different people against 0.99
    for an image and its mirror at 64 px), `target_detected`, `edited_detected`. The frame's
    `attrs` hold the counts of undetected faces and of NaN similarities.
    """
    target_embeddings, target_detected = embedded_targets if embedded_targets is not None else backend.embed(targets)
    edited_embeddings, edited_detected = embedded_edited if embedded_edited is not None else backend.embed(edited)
    n, n_targets = len(edited_embeddings), len(target_embeddings)
    if n_targets not in (1, n):
        raise ValueError(f"identity_similarity: {n_targets} targets for {n} edited images; give 1 or {n}")
    table = pd.DataFrame(
        dict(
            pair=np.arange(n),
            similarity=cosine_similarity(target_embeddings, edited_embeddings),
            distance=np.linalg.norm(target_embeddings - edited_embeddings, axis=1),
            target_detected=np.broadcast_to(target_detected, (n,)).copy(),
            edited_detected=np.asarray(edited_detected, bool),
        )
    )
    table.attrs.update(
        backend=backend.name,
        on_undetected=backend.on_undetected,
        targets_undetected=int((~np.asarray(target_detected)).sum()),
        edited_undetected=int((~table.edited_detected).sum()),
        similarity_missing=int(table.similarity.isna().sum()),
    )
    return table


def _discover_backends() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name.endswith("_backend"):
            importlib.import_module(f"{__name__}.{module.name}")


_discover_backends()

__all__ = [
    "UNDETECTED_POLICIES",
    "IdentityBackend",
    "register_identity_backend",
    "identity_backends",
    "make_identity_backend",
    "identity_similarity",
    "cosine_similarity",
    "check_undetected_policy",
]
