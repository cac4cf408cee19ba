"""Inversion of images into any latent space of `spaces/`, as plain functions (usable from a notebook).

from fzplus.inversion import invert, render, edit, load_targets
x = load_targets(paths, resolution=G.resolution)           # [N, 3, R, R] in [-1, 1], Lanczos
result = invert(x, G, "F/Z+", steps=1200, encoder=E)        # codes, reconstructions, loss traces
edited = edit(result.codes, "F/Z+", G, direction, alpha=1.0)
images = render(edited, G, "F/Z+")
"""

from fzplus.images import resize_bicubic, resize_lanczos
from fzplus.inversion.engine import LOSS_TERMS, InversionResult, derive_image_seed, invert
from fzplus.inversion.rendering import edit, render
from fzplus.targets import load_target, load_targets

__all__ = [
    "LOSS_TERMS",
    "InversionResult",
    "derive_image_seed",
    "edit",
    "invert",
    "load_target",
    "load_targets",
    "render",
    "resize_bicubic",
    "resize_lanczos",
]
