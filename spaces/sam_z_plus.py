"""SAM w/ Z+: SAM's spatially adaptive residuals on a Z+ pivot, edited in Z (spaces/_sam.py)."""

from ._sam import SAMSpace
from .z_plus import SPACE as Z_PLUS

SPACE = SAMSpace(
    name="SAM w/ Z+",
    slug="sam_z_plus",
    pivot=Z_PLUS,
    description="pivot Z+ (the Z+ inversion), then masked feature residuals chosen per face segment (SAM)",
)
