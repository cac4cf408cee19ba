"""F/S: base code f plus the style vectors of the layers after the split."""

from ._families import SSpace

SPACE = SSpace(
    name="F/S",
    slug="f_s",
    uses_base_code=True,
    description="base code f + one style vector per synthesis layer after the split",
)
