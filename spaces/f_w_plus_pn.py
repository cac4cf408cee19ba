"""F/W+(P_N): BDInvert's space, F/W+ with the P_N regulariser on the detail codes."""

from ._families import WSpace

SPACE = WSpace(
    name="F/W+(P_N)",
    slug="f_w_plus_pn",
    per_layer=True,
    uses_base_code=True,
    pn_regularised=True,
    description="base code f + one w per layer >= M, regularised by lambda_pn * mean(p_N^2)",
)
