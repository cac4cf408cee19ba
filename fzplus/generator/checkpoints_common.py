"""Pieces shared by the checkpoint readers and writers: the error type, the parsed-checkpoint record and
atomic file writing. The public API is in `fzplus.generator.checkpoints`."""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import torch


class CheckpointError(ValueError):
    """A file that cannot be read as a generator checkpoint. The message names the file, says what was
    expected and, where there is one, how to fix it."""

    def __init__(self, path: str | os.PathLike, problem: str, *, fix: str = ""):
        self.path = pathlib.Path(path)
        super().__init__(f"{self.path}: {problem}" + (f" {fix}" if fix else ""))


class ParsedCheckpoint(NamedTuple):
    """What every format reader returns; `checkpoints.load_generator` builds the Generator from it."""

    config: dict  # keyword arguments of networks.Generator (the shape of Generator.config)
    state_dict: dict[str, torch.Tensor]  # our parameter/buffer names; 'mapping.w_avg' may be absent
    metadata: dict  # plain data: provenance, assumptions made while converting
