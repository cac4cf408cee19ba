"""Z: one code on the sphere of radius sqrt(512) for all layers (the StyleGAN prior)."""

from ._families import ZSpace

SPACE = ZSpace(
    name="Z",
    slug="z",
    per_layer=False,
    uses_base_code=False,
    description="one z on the sphere sqrt(512), mapped and repeated over all layers",
)
