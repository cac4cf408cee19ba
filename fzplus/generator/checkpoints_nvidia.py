"""NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3): read without NVIDIA's code, and written.

File facts (NVlabs stylegan2-ada-pytorch / stylegan3: torch_utils/persistence.py, training/networks.py,
training/training_loop.py, legacy.py):
- A snapshot is `pickle.dump(dict(G=, D=, G_ema=, augment_pipe=, training_set_kwargs=), f)` of CPU
  modules in eval mode. Every network class is wrapped by `persistence.persistent_class`, whose
  `__reduce__` pickles an instance as `torch_utils.persistence._reconstruct_persistent_obj(meta)`, with
  meta = dict(type='class', version=6, module_src=<source of the defining module>, class_name=...,
  state=<the torch Module __dict__>). NVIDIA's unpickling exec()s module_src: arbitrary code.
- state holds '_parameters' and '_buffers' (OrderedDicts of tensors), '_modules' (OrderedDict of nested
  persistent objects), '_non_persistent_buffers_set', hook dicts, plain attributes, and '_init_args' /
  '_init_kwargs', the constructor's arguments (with dnnlib.util.EasyDict values).
- torch pickles a tensor as `torch._utils._rebuild_tensor_v2(storage, ...)`, a Parameter as
  `torch._utils._rebuild_parameter(tensor, requires_grad, hooks)`, and each storage as
  `torch.storage._load_from_bytes(<legacy torch.save bytes>)`.
- G_ema's init_kwargs: z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs (num_layers,
  lr_multiplier, ...) and synthesis_kwargs (channel_base, channel_max, num_fp16_res, conv_clamp,
  architecture, ...); stylegan3's networks_stylegan2 takes the synthesis kwargs flat instead. Its
  parameter and buffer names are those of networks.Generator.

Reading uses an Unpickler whose find_class knows only the names above (the persistence reconstructor
becomes `NetworkRecord`, which keeps meta as data: module_src is never run) and refuses everything else.
"""

from __future__ import annotations

import collections
import copy
import io
import os
import pathlib
import pickle
from collections.abc import Mapping

import numpy as np
import torch

from fzplus.generator.checkpoints_common import CheckpointError, ParsedCheckpoint
from fzplus.generator.networks import (
    FullyConnected,
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
    default_channels,
)
from fzplus.io import atomic_write

try:
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _np_multiarray

PERSISTENCE_VERSION = 6
_SOURCE_NOT_EMBEDDED = "# Written by fzplus.generator.checkpoints_nvidia; NVIDIA's source code is not embedded.\n"
_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_EXPECTED = (
    "Expected an unconditional StyleGAN2 network snapshot (network-snapshot-*.pkl) "
    "of stylegan2-ada-pytorch or stylegan3."
)


class NetworkRecord:
    """One NVIDIA persistent object kept as data: meta = dict(type, version, module_src, class_name, state)."""

    def __init__(self, meta: dict):
        self.meta = dict(meta)

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name"))

    @property
    def state(self) -> dict:
        state = self.meta.get("state")
        return state if isinstance(state, dict) else {}

    def children(self) -> dict:
        return dict(self.state.get("_modules") or {})

    def __reduce__(self):
        return NetworkRecord, (self.meta,)


class _EasyDict(dict):
    """Stands for dnnlib.util.EasyDict (a dict with attribute access) when reading and writing."""


def _storage_from_bytes(data: bytes):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _parameter_data(data, requires_grad, backward_hooks, *state):
    return data  # requires_grad and hooks are training-time details


# The stand-ins written under, and read back from, NVIDIA's global names.
_NVIDIA_NAMES = {
    NetworkRecord: ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    _EasyDict: ("dnnlib.util", "EasyDict"),
}
_ALLOWED_GLOBALS = {
    **{name: stand_in for stand_in, name in _NVIDIA_NAMES.items()},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _parameter_data,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter_data,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{
        (module, name): getattr(_np_multiarray, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("scalar", "_reconstruct")
    },
}


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"refused global {module}.{name}")
        self.module, self.name = module, name


class _WhitelistUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class answers from `allowed`, a table (module, name) -> object, and raises
    _RefusedGlobal for every other global: nothing outside the table is imported or run."""

    def __init__(self, file, *, allowed: Mapping[tuple[str, str], object]):
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise _RefusedGlobal(module, name) from None


def _unpickle(path: pathlib.Path, allowed: Mapping[tuple[str, str], object]):
    """The object pickled in `path`, through _WhitelistUnpickler(allowed). Raises _RefusedGlobal for a global
    outside the table (the reader words it, with _refused) and CheckpointError for a missing or damaged file."""
    try:
        with open(path, "rb") as f:
            return _WhitelistUnpickler(f, allowed=allowed).load()
    except _RefusedGlobal:
        raise
    except Exception as e:  # a damaged byte stream can fail in any opcode, with any exception type
        raise CheckpointError(
            path, f"is a truncated or corrupt pickle ({type(e).__name__}: {e}).", fix="Download or copy it again."
        ) from None


def _refused(path: pathlib.Path, refused: _RefusedGlobal, *, kind: str, reads: str, fix: str) -> CheckpointError:
    """The error for a `kind` of pickle (whose reader reads only `reads`) that asks for a global off its table."""
    return CheckpointError(
        path,
        f"asks the unpickler for '{refused.module}.{refused.name}', which no {kind} needs; refused "
        f"without running it (only {reads} are read).",
        fix=f"{fix} Do not load this file with plain pickle unless you trust its origin.",
    )


# ---- reading -------------------------------------------------------------------------------------------
def read_nvidia_pickle(path: str | os.PathLike) -> ParsedCheckpoint:
    """G_ema of an NVIDIA network pickle as (Generator config, state dict, metadata); runs no pickled code."""
    path = pathlib.Path(path)
    try:
        data = _unpickle(path, _ALLOWED_GLOBALS)
    except _RefusedGlobal as e:
        if e.module.startswith("dnnlib.tflib"):
            raise CheckpointError(
                path,
                "is a TensorFlow StyleGAN2 pickle, which is not read here.",
                fix="Convert it with NVIDIA stylegan2-ada-pytorch: python legacy.py --source=OLD.pkl --dest=NEW.pkl",
            ) from None
        reads = "tensors, containers and NVIDIA's persistence records"
        raise _refused(path, e, kind="network pickle", reads=reads, fix=_EXPECTED) from None
    record = data.get("G_ema") if isinstance(data, dict) else None
    if not isinstance(record, NetworkRecord):
        found = f"keys {sorted(map(str, data))}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise CheckpointError(
            path, f"is a pickle without an NVIDIA network under 'G_ema' (found {found}).", fix=_EXPECTED
        )
    return _parse_generator_record(record, path)


def _parse_generator_record(record: NetworkRecord, path: pathlib.Path) -> ParsedCheckpoint:
    synthesis, mapping = record.children().get("synthesis"), record.children().get("mapping")
    if isinstance(synthesis, NetworkRecord) and "input" in synthesis.children():
        raise CheckpointError(
            path,
            "holds a StyleGAN3 (alias-free) generator; the suite's F spaces are defined on the StyleGAN2 "
            "synthesis network (constant input, b4..bR blocks), which StyleGAN3 does not have.",
            fix="Use a StyleGAN2 pickle (stylegan2-ada-pytorch, or stylegan3 trained with --cfg=stylegan2).",
        )
    kwargs = record.state.get("_init_kwargs")
    if (
        record.class_name != "Generator"
        or not isinstance(kwargs, dict)
        or not all(isinstance(m, NetworkRecord) for m in (synthesis, mapping))
    ):
        raise CheckpointError(
            path,
            f"has a {record.class_name!r} under 'G_ema', without a Generator's init_kwargs and "
            "mapping/synthesis networks.",
            fix=_EXPECTED,
        )
    config, synthesis_kwargs = _config_from_init_kwargs(dict(kwargs), path)
    metadata = dict(
        format="nvidia-pickle",
        source_file=str(path),
        persistence_version=record.meta.get("version"),
        num_fp16_res=int(synthesis_kwargs.get("num_fp16_res", 0)),
        precision="float32 (num_fp16_res only sped up the original)",
    )
    return ParsedCheckpoint(config, _flatten(record, path), metadata)


def _config_from_init_kwargs(kwargs: dict, path: pathlib.Path) -> tuple[dict, dict]:
    mapping_kwargs = dict(kwargs.get("mapping_kwargs") or {})
    synthesis_kwargs = dict(kwargs.get("synthesis_kwargs") or {})
    synthesis_kwargs.update({k: v for k, v in kwargs.items() if k not in _GENERATOR_ARGS})  # stylegan3's flat form
    try:
        resolution, z_dim, w_dim, img_channels = (
            int(kwargs[k]) for k in ("img_resolution", "z_dim", "w_dim", "img_channels")
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            path, f"G_ema's init_kwargs lack a usable {e}; found {sorted(kwargs)}.", fix=_EXPECTED
        ) from None
    variants = [  # (what, value in the file, the only value implemented here)
        ("c_dim", kwargs.get("c_dim", 0), 0),
        ("architecture", synthesis_kwargs.get("architecture", "skip"), "skip"),
        ("synthesis activation", synthesis_kwargs.get("activation", "lrelu"), "lrelu"),
        ("resample_filter", list(synthesis_kwargs.get("resample_filter") or [1, 3, 3, 1]), [1, 3, 3, 1]),
        ("use_noise", synthesis_kwargs.get("use_noise", True), True),
        ("mapping activation", mapping_kwargs.get("activation", "lrelu"), "lrelu"),
        ("mapping layer_features", mapping_kwargs.get("layer_features") or w_dim, w_dim),
    ]
    for what, value, supported in variants:
        if value != supported:
            raise CheckpointError(
                path,
                f"has {what}={value!r}; only {what}={supported!r} is implemented (config-F StyleGAN2: "
                "unconditional, 'skip' architecture, lrelu, [1,3,3,1] filters, noise inputs).",
                fix="Use an unconditional config-F StyleGAN2 generator.",
            )
    conv_clamp = synthesis_kwargs.get("conv_clamp")
    channel_base, channel_max = (
        int(synthesis_kwargs.get("channel_base", 32768)),
        int(synthesis_kwargs.get("channel_max", 512)),
    )
    config = dict(
        resolution=resolution,
        z_dim=z_dim,
        w_dim=w_dim,
        img_channels=img_channels,
        channels=default_channels(resolution, channel_base=channel_base, channel_max=channel_max),
        mapping_layers=int(mapping_kwargs.get("num_layers", 8)),
        mapping_lr_multiplier=float(mapping_kwargs.get("lr_multiplier", 0.01)),
        conv_clamp=None if conv_clamp is None else float(conv_clamp),
    )
    return config, synthesis_kwargs


def _flatten(record: NetworkRecord, path: pathlib.Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The record tree's parameters and persistent buffers under state-dict names ('synthesis.b4.const')."""
    state = record.state
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    buffers = {k: v for k, v in (state.get("_buffers") or {}).items() if k not in non_persistent}
    tensors = {}
    for name, value in [*(state.get("_parameters") or {}).items(), *buffers.items()]:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                path, f"has a {type(value).__name__} where G_ema's tensor '{prefix}{name}' belongs.", fix=_EXPECTED
            )
        tensors[prefix + name] = value
    for name, child in record.children().items():
        if not isinstance(child, NetworkRecord):
            raise CheckpointError(
                path, f"has a {type(child).__name__} where G_ema's sub-network '{prefix}{name}' belongs.", fix=_EXPECTED
            )
        tensors.update(_flatten(child, path, f"{prefix}{name}."))
    return tensors


# ---- writing -------------------------------------------------------------------------------------------
_NVIDIA_CLASS_NAMES = {
    Generator: "Generator",
    MappingNetwork: "MappingNetwork",
    SynthesisNetwork: "SynthesisNetwork",
    SynthesisBlock: "SynthesisBlock",
    SynthesisLayer: "SynthesisLayer",
    ToRGBLayer: "ToRGBLayer",
    FullyConnected: "FullyConnectedLayer",
}
_MODULE_HOOK_DICTS = (
    "_backward_hooks",
    "_forward_hooks",
    "_forward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def _module_record(
    module: torch.nn.Module,
    *,
    class_name: str | None = None,
    init_kwargs: dict | None = None,
    attributes: dict | None = None,
) -> NetworkRecord:
    """A persistent record whose state is laid out like the Module __dict__ of NVIDIA's torch-1.x era.

    Only the top-level records carry init kwargs, and sub-records lack NVIDIA's per-class plain attributes
    (up, resolution, weight_gain, ...), which only NVIDIA's classes would use: readers that rebuild the
    network from G_ema's init_kwargs and copy tensors by name (this module) need no more."""
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        **{hooks: collections.OrderedDict() for hooks in _MODULE_HOOK_DICTS},
        "_modules": collections.OrderedDict((name, _module_record(child)) for name, child in module._modules.items()),
        **(attributes or {}),
        "_init_args": (),
        "_init_kwargs": dict(init_kwargs or {}),
    }
    name = class_name or _NVIDIA_CLASS_NAMES[type(module)]
    return NetworkRecord(
        dict(type="class", version=PERSISTENCE_VERSION, module_src=_SOURCE_NOT_EMBEDDED, class_name=name, state=state)
    )


def _channel_rule(G: Generator) -> tuple[int, int]:
    """(channel_base, channel_max) that give G's widths under NVIDIA's min(channel_base // res, channel_max)."""
    channels, resolution = G.synthesis.channels, G.resolution
    channel_base, channel_max = channels[resolution] * resolution, max(channels.values())
    if default_channels(resolution, channel_base=channel_base, channel_max=channel_max) != channels:
        raise ValueError(
            "NVIDIA pickles give channel widths as min(channel_base // res, channel_max); "
            f"{channels} follows no such rule. "
            "Write this generator with save_generator or write_rosinality_checkpoint instead."
        )
    return channel_base, channel_max


def nvidia_snapshot(G: Generator) -> dict:
    """The dict NVIDIA's training loop pickles, for G: G and G_ema as persistent records (copies of G's
    tensors), D as a parameter-free 'Discriminator' record (there is no discriminator to store), no
    augment_pipe (as with --aug=noaug), and image-folder training_set_kwargs."""
    channel_base, channel_max = _channel_rule(G)
    cfg = G.config
    shape = dict(
        z_dim=G.z_dim, c_dim=0, w_dim=G.w_dim, img_resolution=G.resolution, img_channels=G.synthesis.img_channels
    )
    init_kwargs = dict(
        **shape,
        mapping_kwargs=_EasyDict(num_layers=cfg["mapping_layers"], lr_multiplier=cfg["mapping_lr_multiplier"]),
        synthesis_kwargs=_EasyDict(
            channel_base=channel_base,
            channel_max=channel_max,
            num_fp16_res=0,
            conv_clamp=cfg["conv_clamp"],
            architecture="skip",
        ),
    )
    G_ema = copy.deepcopy(G).cpu().eval().requires_grad_(False)
    generators = [
        _module_record(g, init_kwargs=init_kwargs, attributes=dict(shape, num_ws=G.num_ws))
        for g in (copy.deepcopy(G_ema), G_ema)
    ]
    D = _module_record(
        torch.nn.Module(),
        class_name="Discriminator",
        init_kwargs=dict(c_dim=0, img_resolution=G.resolution, img_channels=shape["img_channels"]),
    )
    training_set_kwargs = dict(
        class_name="training.dataset.ImageFolderDataset",
        path="",
        use_labels=False,
        max_size=None,
        xflip=False,
        resolution=G.resolution,
    )
    return dict(G=generators[0], D=D, G_ema=generators[1], augment_pipe=None, training_set_kwargs=training_set_kwargs)


class _NvidiaPickler(pickle._Pickler):
    """The pure-Python pickler, because its save_global can be overridden (the C pickler's cannot): the
    stand-ins are written under NVIDIA's global names, so no NVIDIA module has to be importable."""

    def save_global(self, obj, name=None):
        if not (isinstance(obj, type) and obj in _NVIDIA_NAMES):
            return super().save_global(obj, name)
        module, qualname = _NVIDIA_NAMES[obj]
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)


def dump_nvidia_snapshot(snapshot: dict, path: str | os.PathLike) -> None:
    """Pickle a snapshot dict (see nvidia_snapshot) atomically, with protocol 3 as NVIDIA's Python 3.7 did."""
    atomic_write(path, lambda f: _NvidiaPickler(f, protocol=3).dump(snapshot))


def write_nvidia_pickle(G: Generator, path: str | os.PathLike) -> None:
    """Write G as an NVIDIA network pickle (G_ema = G) that `load_generator` reads back exactly.

    The file has the structure and global names of a stylegan2-ada-pytorch snapshot, but no module
    source (NVIDIA's code is not redistributed here), so NVIDIA's own loader cannot rebuild it; it exists
    to test the `paper` world's code paths with small random generators in the real format.
    """
    dump_nvidia_snapshot(nvidia_snapshot(G), path)
