"""Latent edits: where to move an inverted code.

- `fzplus.edits.directions`: direction finders (random, GANSpace, InterFaceGAN, ...), one plugin each,
  all returning a `Directions` record (vectors, domain "Z" or "W", names, diagnostics).
- `fzplus.edits.attributes`: offline attribute labeller (dlib landmarks) that gives InterFaceGAN its
  labels in the mini profile.
Applying a direction to an inverted code is defined by each latent space (`spaces/`).
"""

from fzplus.edits.directions import Directions, find_directions

__all__ = ["Directions", "find_directions"]
