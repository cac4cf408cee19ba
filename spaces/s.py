"""S: the per-layer style vectors (StyleSpace, Wu et al. 2021), one per synthesis layer.

StyleGAN2: each layer's modulation style, s_l = A_l(w_l), [C_l] (the layer's input channels), toRGB layers
included. StyleGAN1: each layer's AdaIN style [y_s, y_b] = A_l(w_l), [2 C_l] (scale then bias), one per ws entry;
its ToRGB takes no style. S is defined on both, for the reasons StyleSpace gives for S itself:
- it is the same quantity: the output of the layer's learned affine map of w, the last code before the synthesis
  layer and the only one the layer consumes (`synthesis.styles`; genforce calls StyleGAN1's the Y space);
- StyleSpace's case for S is that the affine maps make each channel's style a separate, channel-wise control,
  more disentangled than w. AdaIN's scale and bias act channel by channel on the normalised features just as
  StyleGAN2's modulation scales a channel's weights (StyleGAN2 moved that scale into the conv and dropped the
  bias when it replaced AdaIN by weight demodulation);
- editing works alike: a style is affine in w, so a W direction n moves it by exactly A_l n (bias half included).
What differs is only the size of the code: 2 C_l per layer, and no toRGB styles. `synthesis.style_dims` gives the
lengths, so the space's code s [N, sum of them] needs no case of its own.
"""

from ._families import SSpace

SPACE = SSpace(
    name="S",
    slug="s",
    uses_base_code=False,
    description="one style vector per synthesis layer, starting at the styles of w_avg",
)
