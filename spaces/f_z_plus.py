"""F/Z+: base code f plus one z on the sphere per detail layer (the paper's method)."""

from ._families import ZSpace

SPACE = ZSpace(
    name="F/Z+",
    slug="f_z_plus",
    per_layer=True,
    uses_base_code=True,
    description="base code f + one z per layer >= M, each on the sphere sqrt(512)",
)
