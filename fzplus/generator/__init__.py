"""StyleGAN2 generator in plain PyTorch, split at the base code F, and its checkpoint formats."""

from fzplus.generator.networks import BaseCode, Generator, default_channels

__all__ = ["BaseCode", "Generator", "default_channels"]

from fzplus.generator.checkpoints import (  # noqa: E402
    CheckpointError,
    load_generator,
    read_checkpoint_metadata,
    save_generator,
    write_nvidia_pickle,
    write_rosinality_checkpoint,
)

__all__ += [
    "CheckpointError",
    "load_generator",
    "read_checkpoint_metadata",
    "save_generator",
    "write_nvidia_pickle",
    "write_rosinality_checkpoint",
]
