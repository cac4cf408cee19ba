"""The encoders' training recipes: the one home of their defaults. The config sections `encoder:` and `idinvert:`
are generated from these classes (fzplus.settings.schema_of), and the training functions' keyword defaults
read them, so a default is written once.

Both recipes share `EncoderRecipe`'s fields (a pretrained file instead of training, steps, batch, learning
rate, the truncation of the training samples, checkpointing); each kind sets its own defaults and adds its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fzplus.settings import setting

PRETRAINED = (
    "a trained encoder file for this generator (checked by fingerprint), used instead of training one in the run; "
    "the recipe is then the one it was trained with "
    "(the bootstrap rules train_mini_encoder, train_mini_idinvert_encoder)"
)


@dataclass(frozen=True)
class EncoderRecipe:
    """What every encoder recipe has: trained on generated images, with Adam, checkpointed, or taken pretrained."""

    pretrained: str | None = setting(None, description=PRETRAINED)
    steps: int = setting(10000, minimum=0)
    batch_size: int = setting(16, minimum=1)
    lr: float = setting(1e-3, exclusiveMinimum=0)
    truncation_psi: float = setting(1.0, minimum=0, maximum=1, description="truncation of the training samples' ws")
    truncation_cutoff: int | None = setting(None, minimum=1)
    checkpoint_every: int = setting(500, minimum=1)


@dataclass(frozen=True)
class BaseCodeRecipe(EncoderRecipe):
    """the base-code encoder E: X -> F (BDInvert's recipe; fzplus.encoders.base_code_training)"""

    truncation_psi: float = setting(
        0.7, minimum=0, maximum=1, description="truncation of the training samples' ws (BDInvert)"
    )
    truncation_cutoff: int | None = setting(8, minimum=1)
    lr_decay: float = setting(0.1, exclusiveMinimum=0, maximum=1)
    lr_decay_every: int = setting(2000, minimum=1)
    lambda_enc: float = setting(10.0, minimum=0)
    stage_channels: tuple[int, ...] = setting((128, 256, 512), minItems=1, items={"minimum": 1})


@dataclass(frozen=True)
class DomainRecipe(EncoderRecipe):
    """IDInvert's domain-guided W+ encoder (fzplus.encoders.domain_training; IDInvert's recipe, trained on
    generated images)"""

    lr: float = setting(1e-4, exclusiveMinimum=0, description="Adam, encoder and discriminator (IDInvert)")
    checkpoint_every: int = setting(250, minimum=1)
    lambda_adv: float = setting(0.08, minimum=0, description="weight of the encoder's adversarial term (IDInvert)")
    r1_gamma: float = setting(10.0, minimum=0, description="R1 weight of the discriminator (IDInvert)")
    r1_every: int = setting(4, minimum=1, description="lazy R1: every this many steps (1 = IDInvert's every step)")
    lambda_per: float = setting(
        0.0, minimum=0, description="weight of the perceptual distance (stand-in for IDInvert's 5e-5 VGG conv4_3 term)"
    )
    channel_base: int = setting(64, minimum=1)
    channel_max: int = setting(1024, minimum=1)
    dense_rank: int | None = setting(
        None, minimum=1, description="rank of the dense layer to W+ (null = IDInvert's full layer)"
    )


BASE_CODE, DOMAIN = BaseCodeRecipe(), DomainRecipe()
