"""StyleGAN2 and StyleGAN1 generators in plain PyTorch, split at the base code F, and their checkpoint formats."""

from fzplus.generator.networks import BaseCode, Generator, default_channels
from fzplus.generator.stylegan1 import StyleGAN1Generator

__all__ = ["BaseCode", "Generator", "StyleGAN1Generator", "default_channels"]

from fzplus.generator.checkpoints import (  # noqa: E402
    CheckpointError,
    load_generator,
    read_checkpoint_metadata,
    save_generator,
    write_nvidia_pickle,
    write_rosinality_checkpoint,
)
from fzplus.generator.checkpoints_stylegan1 import write_rosinality_stylegan1_checkpoint  # noqa: E402
from fzplus.generator.checkpoints_stylegan1_nvidia import (  # noqa: E402
    write_genforce_checkpoint,
    write_tensorflow_pickle,
)

__all__ += [
    "write_genforce_checkpoint",
    "write_rosinality_stylegan1_checkpoint",
    "write_tensorflow_pickle",
    "CheckpointError",
    "load_generator",
    "read_checkpoint_metadata",
    "save_generator",
    "write_nvidia_pickle",
    "write_rosinality_checkpoint",
]
