"""W+(P_N): W+ regularised towards high density in the whitened space P_N (Zhu et al.)."""

from ._families import WSpace

SPACE = WSpace(
    name="W+(P_N)",
    slug="w_plus_pn",
    per_layer=True,
    uses_base_code=False,
    pn_regularised=True,
    description="one w per layer, regularised by lambda_pn * mean(p_N^2)",
)
