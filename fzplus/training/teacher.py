"""The data source of the mini generator: the pretrained 64x64 DCGAN face generator of PyPI
`gan-face-generate==1.1.1` (MIT; trained on synthetic DigiFace1M faces; weights in its `weights.tar`).

No real-image dataset can be downloaded on the development machines, so the mini StyleGAN2 learns the
distribution of this teacher's samples, drawn on the fly.
"""

from __future__ import annotations

import importlib.util
import pathlib

import torch
import torch.nn.functional as F

TEACHER_Z_DIM = 100
TEACHER_RESOLUTION = 64
PACKAGE = "gan_face_generate"


def teacher_weights_path() -> pathlib.Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the teacher package gan-face-generate is not installed; install it with "
            "`pip install --no-deps gan-face-generate==1.1.1` (see requirements-nodeps.txt)"
        )
    return pathlib.Path(spec.submodule_search_locations[0]) / "weights.tar"


def load_teacher(*, weights: str | pathlib.Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The DCGAN generator in eval mode (BatchNorm running statistics): z [N, 100, 1, 1] -> image [N, 3, 64, 64]
    in [-1, 1]."""
    from gan_face_generate.models import Generator as DCGANGenerator

    path = pathlib.Path(weights) if weights is not None else teacher_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher weights {path} not found; reinstall gan-face-generate==1.1.1 or pass weights="
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "netG_state_dict" not in state:
        raise ValueError(
            f"{path} is not a gan-face-generate checkpoint (no 'netG_state_dict'; keys: {sorted(state)[:5]})"
        )
    net = DCGANGenerator(0, 3, TEACHER_Z_DIM, 64)
    net.load_state_dict(state["netG_state_dict"])
    return net.eval().requires_grad_(False).to(device)


class TeacherSampler:
    """Draws teacher images, optionally paired with student latents.

    Pairing: the teacher code is A z for a fixed matrix A [100, 512] with orthonormal rows, so every
    student coordinate takes part (not only the first 100) and A z ~ N(0, I_100) whenever z ~ N(0, I_512).

    resolution: the student's; a smaller power of two than the teacher's 64 px gets the teacher's images
    average-pooled to it (the training tests run 16 and 32 px students against the real teacher).
    """

    def __init__(
        self,
        *,
        student_z_dim: int = 512,
        seed: int = 0,
        device: str | torch.device = "cpu",
        weights=None,
        resolution: int = TEACHER_RESOLUTION,
    ):
        if not (resolution <= TEACHER_RESOLUTION and TEACHER_RESOLUTION % resolution == 0):
            raise ValueError(
                f"the student resolution must divide the teacher's {TEACHER_RESOLUTION} px, got {resolution}"
            )
        self.pool = TEACHER_RESOLUTION // resolution
        self.net = load_teacher(weights=weights, device=device)
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(
            torch.randn(student_z_dim, TEACHER_Z_DIM, generator=g)
        )  # [512, 100], orthonormal columns
        self.projection = q.t().contiguous().to(device)  # [100, 512]
        self.device = device

    def _at_resolution(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.pool == 1 else F.avg_pool2d(images, self.pool)

    @torch.no_grad()
    def images_for(self, z: torch.Tensor) -> torch.Tensor:
        """Teacher images paired with student codes z [N, 512] -> [N, 3, R, R] (R = `resolution`, 64 by default)."""
        return self._at_resolution(self.net((z @ self.projection.t())[:, :, None, None]).float())

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator) -> torch.Tensor:
        """Unpaired teacher images [n, 3, R, R] from the teacher's own prior."""
        return self._at_resolution(
            self.net(torch.randn(n, TEACHER_Z_DIM, 1, 1, generator=generator).to(self.device)).float()
        )
