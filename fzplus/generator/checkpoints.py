"""Generator checkpoints: one loader for NVIDIA network pickles, rosinality `.pt` files and the suite's own
format, which is also written here; writers of the two foreign formats live beside this module.

    G = load_generator("stylegan2-ffhq-1024x1024.pkl")      # the format is read from the content
    save_generator(G, "mini.pt", metadata={"kimg": 2000})  # own format, written atomically

Own format, version 1: torch.save of dict(format="fzplus-generator", version=1, config=G.config,
state_dict=G.state_dict(), metadata=<plain data>). Every file is read with torch.load(weights_only=True)
or, for NVIDIA pickles, a whitelist unpickler: loading never runs code that a file brings along.
"""

from __future__ import annotations

import argparse
import copy
import errno
import os
import pathlib
import pickle
import warnings

import torch

from fzplus.generator.checkpoints_common import CheckpointError, ParsedCheckpoint
from fzplus.generator.checkpoints_nvidia import read_nvidia_pickle, write_nvidia_pickle
from fzplus.generator.checkpoints_rosinality import read_rosinality, write_rosinality_checkpoint
from fzplus.generator.checkpoints_stylegan1 import read_rosinality_stylegan1, rosinality_stylegan1_state
from fzplus.generator.checkpoints_stylegan1_nvidia import (
    genforce_state,
    is_tensorflow_pickle,
    read_genforce,
    read_tensorflow_pickle,
)
from fzplus.generator.interface import architecture_of
from fzplus.generator.networks import Generator
from fzplus.generator.stylegan1 import ARCHITECTURE as STYLEGAN1
from fzplus.generator.stylegan1 import StyleGAN1Generator
from fzplus.io import atomic_write

__all__ = [
    "CheckpointError",
    "load_generator",
    "save_generator",
    "read_checkpoint",
    "read_checkpoint_metadata",
    "estimate_w_avg",
    "write_nvidia_pickle",
    "write_rosinality_checkpoint",
]

FORMAT_NAME = "fzplus-generator"
FORMAT_VERSION = 1
W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0
EXPECTED_FORMATS = (
    "Expected an NVIDIA network pickle with 'G_ema' (stylegan2-ada-pytorch / stylegan3), a rosinality "
    ".pt with 'g_ema', a StyleGAN1 checkpoint (NVIDIA's TensorFlow karras2019stylegan-*.pkl, a genforce "
    "stylegan_*.pth, a rosinality style-based-gan-pytorch .model), or a file written by "
    "fzplus.generator.save_generator."
)
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) container
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickled magic number opening torch's legacy format
_PICKLE_PROTO = 0x80  # first byte of every pickle of protocol 2 or later (NVIDIA's are 3 or 4)


# ---- reading -------------------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike) -> ParsedCheckpoint:
    """Detect the format from the file's first bytes and parse it; builds no network."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, f"is a directory, not a generator checkpoint. {EXPECTED_FORMATS}", str(path)
        )
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such generator checkpoint", str(path))
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if not head:
        raise CheckpointError(path, "is empty.", fix="The download or copy was probably interrupted; fetch it again.")
    if head.startswith(_ZIP_MAGIC) or head == _LEGACY_TORCH_MAGIC:
        parsed = _read_torch_file(path)
    elif head[0] == _PICKLE_PROTO:
        parsed = read_tensorflow_pickle(path) if is_tensorflow_pickle(path) else read_nvidia_pickle(path)
    else:
        raise CheckpointError(
            path,
            f"is neither a torch file nor a binary (protocol 2+) pickle; it starts with {head[:8]!r}.",
            fix=EXPECTED_FORMATS,
        )
    w_avg_source = (
        "stored"
        if "mapping.w_avg" in parsed.state_dict
        else f"estimated: mean of the mapping over {W_AVG_SAMPLES} z (seed {W_AVG_SEED})"
    )
    return parsed._replace(metadata={**parsed.metadata, "w_avg_source": w_avg_source})


def _read_torch_file(path: pathlib.Path) -> ParsedCheckpoint:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # rosinality's train.py stores its options
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = next(
            (line.strip() for line in str(e).splitlines() if "global" in line.lower()), str(e).splitlines()[0]
        )
        raise CheckpointError(
            path,
            f"holds objects other than tensors and plain data, so it was not unpickled ({reason}).",
            fix=f"{EXPECTED_FORMATS} Do not load it with weights_only=False unless you trust its origin.",
        ) from None
    except Exception as e:  # a damaged archive fails in zip, pickle or storage code, with their own exception types
        raise CheckpointError(
            path, f"is a truncated or corrupt torch file ({type(e).__name__}: {e}).", fix="Download or copy it again."
        ) from None
    if isinstance(content, dict) and content.get("format") == FORMAT_NAME:
        return _parse_own_format(content, path)
    if isinstance(content, dict) and ("g_ema" in content or "input.input" in content):
        return read_rosinality(content, path)
    if rosinality_stylegan1_state(content) is not None:
        return read_rosinality_stylegan1(content, path)
    if genforce_state(content) is not None:
        return read_genforce(content, path)
    found = (
        f"a dict with keys {sorted(map(str, content))[:8]}"
        if isinstance(content, dict)
        else f"a {type(content).__name__}"
    )
    raise CheckpointError(path, f"is a torch file holding {found}, not a generator checkpoint.", fix=EXPECTED_FORMATS)


def _parse_own_format(content: dict, path: pathlib.Path) -> ParsedCheckpoint:
    if content.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"is {FORMAT_NAME} version {content.get('version')!r}; this code reads version {FORMAT_VERSION}.",
            fix="Use the fzplus version that wrote it, or re-save the generator with this one.",
        )
    config, state, metadata = content.get("config"), content.get("state_dict"), content.get("metadata", {})
    if not (isinstance(config, dict) and isinstance(state, dict) and isinstance(metadata, dict)):
        raise CheckpointError(
            path,
            f"is a damaged {FORMAT_NAME} file: 'config', 'state_dict' and 'metadata' must be dicts.",
            fix="Re-save the generator.",
        )
    return ParsedCheckpoint(dict(config), dict(state), {**metadata, "format": FORMAT_NAME})


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """Metadata of any supported checkpoint without building the network: for own-format files what
    save_generator stored, plus 'format', 'w_avg_source' (stored, or how it is estimated) and 'config'."""
    parsed = read_checkpoint(path)
    return {**parsed.metadata, "config": parsed.config}


@torch.no_grad()
def estimate_w_avg(G: Generator, *, num_samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """Mean of w over num_samples seeded z ~ N(0, I): the truncation centre for files that store none. [w_dim]"""
    z = torch.randn(num_samples, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z.to(G.w_avg.device)).mean(dim=0)


def load_generator(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Generator:
    """Any supported checkpoint as a Generator in eval mode without gradients, on `device`.

    The returned generator has `checkpoint_metadata` (a dict: format, source file, assumptions made while
    converting). A file without w_avg gets estimate_w_avg's, with a warning.
    """
    path = pathlib.Path(path)
    parsed = read_checkpoint(path)
    try:
        G = (StyleGAN1Generator if architecture_of(parsed.config) == STYLEGAN1 else Generator)(**parsed.config)
    except (TypeError, ValueError, KeyError, AssertionError) as e:
        raise CheckpointError(
            path,
            f"declares an architecture the Generator cannot build ({type(e).__name__}: {e}; config {parsed.config}).",
            fix="The file is damaged or was written by another version of the network code.",
        ) from None
    state = dict(parsed.state_dict)
    needs_w_avg = "mapping.w_avg" not in state
    if needs_w_avg:
        state["mapping.w_avg"] = G.mapping.w_avg  # placeholder, replaced once the mapping weights are in
    _check_state_dict(G, state, path)
    G.load_state_dict(state)  # copy_ casts fp16 files to the float32 parameters
    if needs_w_avg:
        G.mapping.w_avg.copy_(estimate_w_avg(G))
        warnings.warn(
            f"{path} stores no w_avg; truncation uses the mean of {W_AVG_SAMPLES} mapped z (seed {W_AVG_SEED}).",
            stacklevel=2,
        )
    G.checkpoint_metadata = parsed.metadata
    return G.eval().requires_grad_(False).to(device)


def _check_state_dict(G: Generator, state: dict, path: pathlib.Path) -> None:
    expected = G.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        if isinstance(v, torch.Tensor)
        else f"{k} is a {type(v).__name__}"
        for k, v in state.items()
        if k in expected and not (isinstance(v, torch.Tensor) and v.shape == expected[k].shape)
    ]
    problems = [
        f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if keys
    ]
    if problems:
        raise CheckpointError(
            path,
            f"does not match the architecture it declares ({'; '.join(problems)}).",
            fix="The file is damaged or comes from a modified network definition.",
        )


# ---- writing -------------------------------------------------------------------------------------------
def save_generator(
    G: Generator, path: str | os.PathLike, *, metadata: dict | None = None, dtype: torch.dtype = torch.float32
) -> None:
    """Write G in the suite's own format, atomically (a failure leaves any previous file untouched).

    dtype: storage type of the floating tensors (float16 halves the file; loading returns float32).
    metadata: plain data (dict / list / str / int / float / bool / None), e.g. a training recipe.
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype such as torch.float16, got {dtype!r}")
    metadata = {} if metadata is None else dict(metadata)
    _check_plain_data(metadata, "metadata")
    state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    payload = dict(
        format=FORMAT_NAME,
        version=FORMAT_VERSION,
        config=copy.deepcopy(G.config),
        state_dict={k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
        metadata={**metadata, "stored_dtype": str(dtype).removeprefix("torch.")},
    )
    atomic_write(path, lambda f: torch.save(payload, f))


def _check_plain_data(value, where: str) -> None:
    """Raise ValueError naming the entry unless value is data that torch.load(weights_only=True) restores."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"{where}: key {key!r} is a {type(key).__name__}; use str or int keys")
            _check_plain_data(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain_data(item, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise ValueError(
            f"{where} is a {type(value).__name__}; checkpoint metadata must be plain data "
            "(dict, list, tuple, str, int, float, bool, None) so that it loads with weights_only=True"
        )
