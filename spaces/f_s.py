"""F/S: base code f plus the style vectors of the layers after the split (S space: spaces/s.py, on StyleGAN1 too).

On StyleGAN1 the split falls inside layer M, between its activation (f) and its AdaIN, so layer M's style is free:
the styles of layers >= M, as StyleGAN1's F/W feeds ws[M] on."""

from ._families import SSpace

SPACE = SSpace(
    name="F/S",
    slug="f_s",
    uses_base_code=True,
    description="base code f + one style vector per synthesis layer after the split",
)
