"""F/W: base code f plus one w for the detail layers."""

from ._families import WSpace

SPACE = WSpace(
    name="F/W", slug="f_w", per_layer=False, uses_base_code=True, description="base code f + one w for layers >= M"
)
