"""PTI: pivotal tuning (Roich et al. 2022) on a W pivot, one w for all layers (spaces/_tuning.py)."""

from ._tuning import TunedSpace
from .w import SPACE as W

SPACE = TunedSpace(
    name="PTI",
    slug="pti",
    pivot=W,
    description="pivot w (the W inversion), then the synthesis weights tuned per image (PTI)",
)
