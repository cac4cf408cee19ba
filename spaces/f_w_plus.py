"""F/W+: base code f plus one w per detail layer (BDInvert without P_N)."""

from ._families import WSpace

SPACE = WSpace(
    name="F/W+", slug="f_w_plus", per_layer=True, uses_base_code=True, description="base code f + one w per layer >= M"
)
