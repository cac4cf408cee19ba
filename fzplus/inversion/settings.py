"""The inversion's own settings (paper §3.3; SPEC §5): the one home of their defaults, the paper's values.

The config's `inversion:` section is generated from this class (fzplus.settings.schema_of) beside the list of
spaces and each method's own section (spaces.base.LatentSpace.settings_class); engine.invert's keyword
defaults are read from `PAPER`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fzplus.optimiser import StoppingSettings
from fzplus.perceptual import PRECISIONS
from fzplus.settings import setting


@dataclass(frozen=True)
class InversionSettings(StoppingSettings):
    """The loss, optimiser and batching of every space's inversion (Eq. 1; the paper's Adam 0.01, 1200 steps, every
    image to the end). The schedule and stopping rule are fzplus.optimiser's."""

    steps: int = setting(1200, minimum=0, description="the step cap: at most this many steps per image")
    lr: float = setting(0.01, exclusiveMinimum=0, description="the peak learning rate")
    lr_rampup: float = setting(0.0, minimum=0, maximum=1, description="linear warm-up over this fraction of the cap")
    lr_rampdown: float = setting(
        0.0, minimum=0, maximum=1, description="cosine ramp-down over this last fraction of the cap (0 = constant)"
    )
    lambda_per: float = setting(10.0, minimum=0)
    lambda_reg: float = setting(10.0, minimum=0)
    batch_size: int | None = setting(None, minimum=1, description="images optimised together; null = all")
    base_size: int = setting(16, enum=[4, 8, 16, 32, 64], description="spatial size of the base code f")
    perceptual_precision: str = setting(
        "float32",
        enum=list(PRECISIONS),
        description="the perceptual trunk's precision in the loss (bfloat16: autocast, ~1.3x faster inversions on "
        "CPUs with AMX; fzplus.perceptual); the metrics are float32 whatever this says",
    )


PAPER = InversionSettings()
