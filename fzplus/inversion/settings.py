"""The inversion's own settings (paper §3.3; SPEC §5): the one home of their defaults, the paper's values.

The config's `inversion:` section is generated from this class (fzplus.settings.schema_of) beside the list of
spaces and each method's own section (spaces.base.LatentSpace.settings_class); engine.invert's keyword
defaults are read from `PAPER`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fzplus.settings import setting


@dataclass(frozen=True)
class InversionSettings:
    """The loss, optimiser and batching of every space's inversion (Eq. 1; the paper's Adam 0.01, 1200 steps)."""

    steps: int = setting(1200, minimum=0)
    lr: float = setting(0.01, exclusiveMinimum=0)
    lambda_per: float = setting(10.0, minimum=0)
    lambda_reg: float = setting(10.0, minimum=0)
    batch_size: int | None = setting(None, minimum=1, description="images optimised together; null = all")
    base_size: int = setting(16, enum=[4, 8, 16, 32, 64], description="spatial size of the base code f")


PAPER = InversionSettings()
