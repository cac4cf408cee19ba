"""F/Z: base code f plus one z on the sphere for the detail layers (paper's comparison space)."""

from ._families import ZSpace

SPACE = ZSpace(
    name="F/Z",
    slug="f_z",
    per_layer=False,
    uses_base_code=True,
    description="base code f + one z on the sphere sqrt(512) for layers >= M",
)
