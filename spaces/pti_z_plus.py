"""PTI w/ Z+: pivotal tuning on a Z+ pivot, one z per layer on the sphere (the paper's Figs. 9-10;
spaces/_tuning.py)."""

from ._tuning import TunedSpace
from .z_plus import SPACE as Z_PLUS

SPACE = TunedSpace(
    name="PTI w/ Z+",
    slug="pti_z_plus",
    pivot=Z_PLUS,
    description="pivot z per layer (the Z+ inversion), then the synthesis weights tuned per image",
)
