"""S: the per-layer style vectors (StyleSpace)."""

from ._families import SSpace

SPACE = SSpace(
    name="S",
    slug="s",
    uses_base_code=False,
    description="one style vector per synthesis layer, starting at the styles of w_avg",
)
