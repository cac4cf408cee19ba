"""W: one intermediate code w for all layers."""

from ._families import WSpace

SPACE = WSpace(
    name="W",
    slug="w",
    per_layer=False,
    uses_base_code=False,
    description="one w repeated over all layers, starting at w_avg",
)
