"""facenet-pytorch face embedding: MTCNN detection + InceptionResnetV1 trained on VGGFace2 (the paper's metric).

MTCNN's weights ship in the facenet-pytorch wheel. InceptionResnetV1's VGGFace2 weights do not: the
library downloads them at first use, which offline machines cannot. This backend never downloads; it
loads `weights` (a local path, config key of the identity metric) or, when none is given, the file in
facenet-pytorch's own cache ($TORCH_HOME/checkpoints/20180402-114759-vggface2.pt), and otherwise
raises an error saying how to provide the file.

Per image: upsample to at least `min_size` px, MTCNN (largest face, `image_size` crop, `margin`,
fixed standardisation (x - 127.5) / 128 as facenet-pytorch does), then the 512-d L2-normalised
embedding. Undetected faces: "full-frame" crops the whole image the same way; "skip" gives NaN.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch
from PIL import Image

import fzplus  # noqa: F401  (must precede facenet_pytorch: it registers the torchvision NMS fallback)
from benchmarks.metrics.identity import IdentityBackend, check_undetected_policy, register_identity_backend
from fzplus.faces.landmarks import as_uint8_images, upsample

VGGFACE2_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"
VGGFACE2_FILE = "20180402-114759-vggface2.pt"


def default_weights_location() -> pathlib.Path:
    """Where facenet-pytorch itself caches the VGGFace2 weights (TORCH_HOME, else XDG_CACHE_HOME/torch)."""
    torch_home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return pathlib.Path(os.path.expanduser(torch_home)) / "checkpoints" / VGGFACE2_FILE


def resolve_weights(weights: str | os.PathLike | None) -> pathlib.Path:
    how = (
        f"Download {VGGFACE2_URL} on a machine with network access, then either set the identity "
        f"backend's `weights` option (config key of the facenet identity metric) to the file, or put it at "
        f"{str(default_weights_location())!r} (facenet-pytorch's cache)."
    )
    if weights is not None:
        path = pathlib.Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"facenet identity backend: weights file {str(path)!r} does not exist. {how}")
        return path
    path = default_weights_location()
    if not path.is_file():
        raise FileNotFoundError(
            f"facenet identity backend: InceptionResnetV1 (VGGFace2) weights are not available "
            f"offline and no `weights` path was given. {how}"
        )
    return path


class FacenetIdentityBackend(IdentityBackend):
    name = "facenet"

    def __init__(
        self,
        *,
        weights: str | os.PathLike | None = None,
        on_undetected: str = "full-frame",
        device: str | torch.device = "cpu",
        min_size: int = 256,
        image_size: int = 160,
        margin: int = 0,
        batch_size: int = 32,
    ):
        self.on_undetected = check_undetected_policy(on_undetected)
        self.weights = resolve_weights(weights)  # before the heavy imports: fail fast and clearly
        from facenet_pytorch import MTCNN, InceptionResnetV1

        self.device, self.min_size, self.image_size, self.margin = (
            torch.device(device),
            int(min_size),
            int(image_size),
            int(margin),
        )
        self.batch_size = int(batch_size)
        self.detector = MTCNN(image_size=self.image_size, margin=self.margin, post_process=True, device=self.device)
        self.network = InceptionResnetV1(pretrained=None, classify=False)
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
            # The released file also holds the VGGFace2 classifier ("logits.*"), unused for embeddings.
            self.network.load_state_dict({k: v for k, v in state.items() if not k.startswith("logits.")})
        except Exception as e:
            raise ValueError(
                f"facenet identity backend: {str(self.weights)!r} is not an InceptionResnetV1 state dict "
                f"({type(e).__name__}: {e}); expected {VGGFACE2_FILE} from {VGGFACE2_URL}"
            ) from e
        self.network.eval().requires_grad_(False).to(self.device)

    def _crop(self, image: np.ndarray) -> tuple[torch.Tensor | None, bool]:
        """Standardised face crop [3, image_size, image_size] (or None under "skip") and whether MTCNN found it."""
        from facenet_pytorch.models.mtcnn import fixed_image_standardization
        from facenet_pytorch.models.utils.detect_face import extract_face

        picture = Image.fromarray(upsample(image, min_size=self.min_size))
        with torch.no_grad():
            face = self.detector(picture)
        if face is not None:
            return face, True
        if self.on_undetected == "skip":
            return None, False
        full_frame = [0, 0, picture.width, picture.height]
        return fixed_image_standardization(extract_face(picture, full_frame, self.image_size, 0)), False

    def embed(self, images) -> tuple[np.ndarray, np.ndarray]:
        crops = [self._crop(image) for image in as_uint8_images(images)]
        detected = np.array([found for _, found in crops], bool)
        faces = [face for face, _ in crops if face is not None]
        embeddings = np.full((len(crops), 512), np.nan)
        if faces:
            with torch.no_grad():
                vectors = torch.cat(
                    [
                        self.network(torch.stack(faces[i : i + self.batch_size]).to(self.device)).cpu()
                        for i in range(0, len(faces), self.batch_size)
                    ]
                )
            embeddings[[face is not None for face, _ in crops]] = vectors.double().numpy()
        return embeddings, detected


register_identity_backend(
    name="facenet",
    factory=FacenetIdentityBackend,
    description="facenet-pytorch MTCNN + InceptionResnetV1 VGGFace2 (paper; weights file needed)",
)
