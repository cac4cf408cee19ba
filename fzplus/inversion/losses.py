"""The image terms of the inversion loss (engine docstring): MSE at full resolution and the perceptual distance at
`perceptual_size` (target: Lanczos, once; reconstruction: bicubic, every step), per image, against fixed targets.

The perceptual target is made as the authors make it (Lanczos_resizing in raven38/hypershpere-gan-inversion and
BDInvert): resized with PIL's Lanczos filter, then clipped to [-1, 1] and rounded to 8 bit, since their resize works on
uint8 images. Lanczos overshoots at edges, so without the clip a saturated target asks the reconstruction for values
no image can hold (up to 0.08 on saturated images, 0.009 on a real face, measured against the unclipped float
resize). The MSE target is the image as given.
"""

from __future__ import annotations

import torch

from fzplus.images import resize_bicubic, resize_lanczos, round_to_8bit
from fzplus.perceptual import PerceptualDistance, check_precision


class ImageLosses:
    """The inversion loss's image terms against fixed targets [N, 3, R, R]; shared by the loop and a method's
    second stage. `targets` is public: a second stage may need the images themselves (SAM's face parser).

    The targets' perceptual features are computed once and indexed, so a batch whose stopped images have left it
    runs the trunk on its reconstructions only (before, such a batch ran the package's forward on both images of every
    pair, every step). `precision` is the trunk's on the reconstructions (fzplus.perceptual.PRECISIONS); the
    targets' features are float32. Reference path: the perceptual network's `cache_target_features = False` (its
    package's own forward on both images, float32 only)."""

    def __init__(
        self,
        targets: torch.Tensor,
        distance_net: PerceptualDistance | None,
        perceptual_size: int,
        *,
        precision: str = "float32",
    ):
        check_precision(precision)
        self.targets, self.distance_net, self.perceptual_size = targets, distance_net, perceptual_size
        self.precision = precision
        self._small = round_to_8bit(resize_lanczos(targets, perceptual_size)) if distance_net is not None else None
        cached = distance_net is not None and distance_net.cache_target_features
        if distance_net is not None and not cached and precision != "float32":
            raise ValueError(
                f"perceptual precision {precision!r} runs on the fast path only; the reference path "
                "(cache_target_features = False) is the package's float32 forward"
            )
        self._target_features = distance_net.batched_features(self._small) if cached else None

    def __call__(self, images: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images of the targets at `index`, index) -> (MSE [n], perceptual distance [n])."""
        mse = (images - self.targets[index]).square().flatten(1).mean(dim=1)
        if self.distance_net is None:
            return mse, torch.zeros_like(mse)
        resized = resize_bicubic(images, self.perceptual_size)
        if self._target_features is None:
            return mse, self.distance_net(resized, self._small[index])
        per = self.distance_net.distance_to_features(
            resized, [f[index] for f in self._target_features], precision=self.precision
        )
        return mse, per

    def maps(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Per-pixel perceptual distance [n, R, R] of images [n, 3, R, R] to their targets (LPIPS's spatial
        map, computed at the loss's size, in float32, and area-resized to R); the squared error, channel mean,
        without a perceptual network."""
        if self.distance_net is None:
            return (images - self.targets[index]).square().mean(dim=1)
        with torch.no_grad():
            resized = resize_bicubic(images, self.perceptual_size)
            distance = self.distance_net.distance_map(resized, self.distance_net.features(self._small[index]))
        return torch.nn.functional.interpolate(distance[:, None], size=images.shape[-2:], mode="area")[:, 0]
