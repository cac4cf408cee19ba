"""Z+: one code on the sphere of radius sqrt(512) per layer."""

from ._families import ZSpace

SPACE = ZSpace(
    name="Z+",
    slug="z_plus",
    per_layer=True,
    uses_base_code=False,
    description="one z per layer, each on the sphere sqrt(512)",
)
