"""SAM: spatially adaptive multilayer inversion (Parmar et al. 2022) on a W+ pivot (spaces/_sam.py)."""

from ._sam import SAMSpace
from .w_plus import SPACE as W_PLUS

SPACE = SAMSpace(
    name="SAM",
    slug="sam",
    pivot=W_PLUS,
    description="pivot W+ (the W+ inversion), then masked feature residuals chosen per face segment (SAM)",
)
