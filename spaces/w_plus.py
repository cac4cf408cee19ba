"""W+: one intermediate code w per layer."""

from ._families import WSpace

SPACE = WSpace(
    name="W+", slug="w_plus", per_layer=True, uses_base_code=False, description="one w per layer, starting at w_avg"
)
