"""StyleGAN2 generator in plain PyTorch, split at the base code F, and its checkpoint formats."""
from fzplus.generator.networks import BaseCode, Generator, default_channels

__all__ = ["BaseCode", "Generator", "default_channels"]
