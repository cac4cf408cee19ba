"""Pieces shared by the checkpoint readers and writers: the error type, the parsed-checkpoint record and
atomic file writing. The public API is in `fzplus.generator.checkpoints`."""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import BinaryIO, Callable, NamedTuple

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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Run write(file) on a temporary file beside `path`, then rename it over `path`.

    The rename is atomic on POSIX and Windows, so readers see the old file or the complete new one, and a
    failure (an exception in `write`, a full disk, a kill) leaves no partial file under `path`.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
