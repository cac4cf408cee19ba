"""NVIDIA's StyleGAN1 variables in their two containers: NVIDIA's TensorFlow pickles (karras2019stylegan-*.pkl,
read without TensorFlow and without running anything from the file) and genforce's `.pth` conversions of them;
read into fzplus.generator.stylegan1 state dicts, and written (tests). Both hold the same tensors in NVIDIA's
numerics (ours), so one table maps each of our names to genforce's and TensorFlow's.

TensorFlow (NVlabs/stylegan dnnlib/tflib/network.py, training/networks_stylegan.py, training/misc.py):
- a snapshot is pickle.dump((G, D, Gs), f, protocol=pickle.HIGHEST_PROTOCOL) of dnnlib.tflib.network.Network
  objects; Gs, the moving average of G, is what NVIDIA's examples sample.
- a Network pickles as its class plus the dict of Network.__getstate__: version (3, or 2 in older files), name,
  static_kwargs (its build function's keyword arguments), components (Gs: 'mapping' and 'synthesis'),
  build_module_src (source that NVIDIA's __setstate__ exec()s: arbitrary code), build_func_name ('G_style',
  'G_mapping', 'G_synthesis') and variables, a list of (name, numpy value) of the Network's own variables.
- variables, named here with their network's build function in front: G_style/lod, G_style/dlatent_avg;
  G_mapping/Dense{i}/weight [in, out] and bias; G_synthesis/lod, G_synthesis/noise{l} [1, 1, r, r] and, per layer
  scope (4x4/Const, 4x4/Conv, {r}x{r}/Conv0_up, {r}x{r}/Conv1), weight [3, 3, in, out] (none under Const, whose
  const is [1, C, 4, 4]), bias, Noise/weight [C], StyleMod/weight [w_dim, 2C], StyleMod/bias;
  ToRGB_lod{k}/weight [1, 1, C, 3] and bias for every resolution (progressive growing: lod 0 is the last and the
  only one used once lod is 0). TensorFlow's conv2d is a cross-correlation like torch's, so [kh, kw, in, out] is
  [out, in, kh, kw] transposed (genforce converters/stylegan_converter.py does the same).
genforce (genforce/genforce models/stylegan_generator.py `pth_to_tf_var_mapping`, converters/stylegan_converter.py,
runners/base_runner.py; the authors load as BDInvert_Release/BDInvert/edit_ganspace.py does):
- files: dict(generator=, discriminator=, generator_smooth=) (converted models), a runner checkpoint
  dict(models=dict(generator=, generator_smooth=, ...), ...), or a bare state dict; DataParallel's 'module.' prefix
  may lead every key. generator_smooth (the moving average) is read when present, as the authors do.
- names: mapping.dense{i}, truncation.w_avg, synthesis.lod, synthesis.layer0.const, synthesis.layer{l}.{weight,
  bias, apply_noise.weight, apply_noise.noise, style.weight, style.bias, blur.kernel [C, 1, 3, 3] (upsampling
  layers)}, synthesis.output{k} (the ToRGBs); torch layouts. Not stored, and assumed as genforce's defaults:
  mapping_lr_mul 0.01, fused_scale 'auto', final_tanh False.

Reading pickles uses an Unpickler whose find_class maps dnnlib.tflib.network.Network to TFNetworkRecord, which
keeps the state as data (the idea of _TFNetworkStub in NVlabs/stylegan2-ada-pytorch legacy.py; build_module_src is
never run), allows numpy's array reconstruction and plain containers (the vetted entries of checkpoints_nvidia's
whitelist) and refuses every other global.
"""

from __future__ import annotations

import copyreg
import os
import pathlib
import pickle
import pickletools
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch

from fzplus.generator.checkpoints_common import CheckpointError, ParsedCheckpoint
from fzplus.generator.checkpoints_nvidia import _ALLOWED_GLOBALS, _refused, _RefusedGlobal, _unpickle
from fzplus.generator.checkpoints_stylegan1 import TensorSource, stylegan1_config
from fzplus.generator.stylegan1 import StyleGAN1Generator, blur_filter
from fzplus.io import atomic_write

GENFORCE_MAPPING_LR = 0.01  # StyleGANGenerator(mapping_lr_mul=0.01); not in the file
TF_NETWORK = ("dnnlib.tflib.network", "Network")
STYLEGAN1_BUILD_FUNCTIONS = ("G_style", "G_mapping", "G_synthesis")
_SOURCE_NOT_EMBEDDED = "# Written by fzplus.generator.checkpoints_stylegan1_nvidia; NVIDIA's source is not embedded.\n"
_TF_FIX = "Expected NVIDIA's TensorFlow StyleGAN pickle (karras2019stylegan-*.pkl of NVlabs/stylegan)."
_STYLEGAN2 = "TensorFlow StyleGAN2 pickles: convert them with NVIDIA stylegan2-ada-pytorch's legacy.py first."
_GENFORCE_FIX = "Expected a genforce StyleGAN (v1) generator, e.g. stylegan_cat256.pth of genforce's model zoo."
_SCAN_OPCODES = 10_000  # the first global of a TensorFlow snapshot comes within its first few opcodes
# the build functions' arguments that change the network (networks_stylegan.py); only these values are read
_SUPPORTED_KWARGS = {
    "label_size": 0,
    "use_styles": True,
    "const_input_layer": True,
    "use_noise": True,
    "nonlinearity": "lrelu",
    "mapping_nonlinearity": "lrelu",
    "use_wscale": True,
    "use_pixel_norm": False,
    "use_instance_norm": True,
    "normalize_latents": True,
    "blur_filter": [1, 2, 1],
}


# ---- the table -----------------------------------------------------------------------------------------
class NvidiaTensor(NamedTuple):
    ours: str | None  # our state-dict key; None: a tensor of the formats only (see `value`)
    genforce: str | None  # None: TensorFlow only
    tf: str | None  # network-prefixed TensorFlow name; None: genforce only
    shape: tuple[int, ...]  # in genforce's layout, also TensorFlow's unless `transposed`
    lead: int = 0  # leading singleton dimensions the formats add to ours (const 1, noise maps 2)
    transposed: bool = False  # TensorFlow holds it as [in, out] (dense) or [kh, kw, in, out] (conv)
    value: torch.Tensor | None = None  # what a formats-only tensor must hold (lod 0, the blur); None: unused


def nvidia_tensors(config: dict) -> list[NvidiaTensor]:
    """Every tensor of the two formats for a StyleGAN1Generator config, with our name where we keep it."""
    T, zero = NvidiaTensor, torch.zeros([])
    z, w, ch, img = config["z_dim"], config["w_dim"], config["channels"], config["img_channels"]
    rows = [
        T("mapping.w_avg", "truncation.w_avg", "G_style/dlatent_avg", (w,)),
        T(None, None, "G_style/lod", (), value=zero),
        T(None, "synthesis.lod", "G_synthesis/lod", (), value=zero),
        T("synthesis.b4.const", "synthesis.layer0.const", "G_synthesis/4x4/Const/const", (1, ch[4], 4, 4), lead=1),
    ]
    for i in range(config["mapping_layers"]):
        a, b, t = f"mapping.fc{i}.", f"mapping.dense{i}.", f"G_mapping/Dense{i}/"
        rows.append(T(a + "weight", b + "weight", t + "weight", (w, z if i == 0 else w), transposed=True))
        rows.append(T(a + "bias", b + "bias", t + "bias", (w,)))
    resolutions = sorted(ch)
    for k, r in enumerate(resolutions):
        scopes = ("4x4/Const", "4x4/Conv") if r == 4 else (f"{r}x{r}/Conv0_up", f"{r}x{r}/Conv1")
        for j, scope in enumerate(scopes):
            a, b, t, c = f"synthesis.b{r}.conv{j}.", f"synthesis.layer{2 * k + j}.", f"G_synthesis/{scope}/", ch[r]
            if scope != "4x4/Const":
                rows.append(
                    T(a + "weight", b + "weight", t + "weight", (c, ch[r // 2] if j == 0 else c, 3, 3), 0, True)
                )
            if j == 0 and r > 4:
                rows.append(T(None, b + "blur.kernel", None, (c, 1, 3, 3), value=blur_filter().expand(c, 1, 3, 3)))
            rows += [
                T(a + "bias", b + "bias", t + "bias", (c,)),
                T(a + "noise_strength", b + "apply_noise.weight", t + "Noise/weight", (c,)),
                T(a + "noise_const", b + "apply_noise.noise", f"G_synthesis/noise{2 * k + j}", (1, 1, r, r), lead=2),
                T(a + "affine.weight", b + "style.weight", t + "StyleMod/weight", (2 * c, w), transposed=True),
                T(a + "affine.bias", b + "style.bias", t + "StyleMod/bias", (2 * c,)),
            ]
        keep = r == resolutions[-1]  # the lower-resolution ToRGBs of progressive growing are unused at lod 0
        b, t = f"synthesis.output{k}.", f"G_synthesis/ToRGB_lod{len(ch) - 1 - k}/"
        rows.append(
            T("synthesis.torgb.weight" if keep else None, b + "weight", t + "weight", (img, ch[r], 1, 1), 0, True)
        )
        rows.append(T("synthesis.torgb.bias" if keep else None, b + "bias", t + "bias", (img,)))
    return rows


def _file_shape(row: NvidiaTensor, column: str) -> tuple[int, ...]:
    if column == "genforce" or not row.transposed:
        return row.shape
    return row.shape[::-1] if len(row.shape) == 2 else (*row.shape[2:], row.shape[1], row.shape[0])


def _read_table(src: TensorSource, rows: list[NvidiaTensor], column: str) -> dict[str, torch.Tensor]:
    """Our state dict from the `column` ('genforce' or 'tf') names of `rows`; checks every tensor's shape."""
    out = {}
    for row in rows:
        name = getattr(row, column)
        if name is None:
            continue
        t = src.take(name, _file_shape(row, column))
        if column == "tf" and row.transposed:
            t = t.permute(3, 2, 0, 1) if t.ndim == 4 else t.t()
        if row.ours is not None:
            out[row.ours] = t.reshape(t.shape[row.lead :])
        elif row.value is not None and not torch.allclose(t, row.value):
            if not name.endswith("lod"):
                raise CheckpointError(src.path, f"has '{name}' other than the [1, 2, 1] blur.", fix=src.fix)
            raise CheckpointError(
                src.path,
                f"was saved while growing ({name} = {t.item()}): its image blends two resolutions' ToRGBs, which "
                "the StyleGAN1 generator here does not implement.",
                fix="Use a checkpoint of the finished model (lod 0).",
            )
    return out


def _write_table(G: StyleGAN1Generator, column: str) -> dict[str, torch.Tensor]:
    ours, out = G.state_dict(), {}
    for row in nvidia_tensors(G.config):
        name = getattr(row, column)
        if name is None:
            continue
        if row.ours is not None:
            t = ours[row.ours].detach().cpu().reshape(row.shape)
        else:
            t = row.value if row.value is not None else torch.zeros(row.shape)
        if column == "tf" and row.transposed:
            t = t.permute(2, 3, 1, 0) if t.ndim == 4 else t.t()
        out[name] = t.contiguous().clone()
    return out


# ---- genforce ------------------------------------------------------------------------------------------
def genforce_state(content: object) -> dict | None:
    """genforce's generator state dict in a torch file's content (generator_smooth first), or None."""
    if not isinstance(content, Mapping):
        return None
    models = content.get("models") if isinstance(content.get("models"), Mapping) else content
    for candidate in (models.get("generator_smooth"), models.get("generator"), content):
        if isinstance(candidate, Mapping):
            keys = list(map(str, candidate))
            prefix = "module." if keys and all(k.startswith("module.") for k in keys) else ""
            state = {k.removeprefix(prefix): v for k, v in zip(keys, candidate.values())}
            if "mapping.dense0.weight" in state and any(k.startswith("synthesis.") for k in state):
                return state
    return None


def read_genforce(content: Mapping, path: str | os.PathLike) -> ParsedCheckpoint:
    """A genforce StyleGAN checkpoint's content as (config, our state dict, metadata)."""
    state = genforce_state(content)
    if state is None or "synthesis.early_layer.const" in state:
        raise CheckpointError(
            path,
            "holds no genforce StyleGAN1 generator" + (" (it is a StyleGAN2)." if state else "."),
            fix=f"{_GENFORCE_FIX} genforce's StyleGAN2 models are NVIDIA's: use NVIDIA's pickle of the same model.",
        )
    src = TensorSource(state, path, what="genforce StyleGAN generator", fix=_GENFORCE_FIX)
    num_layers = next(i for i in range(len(state) + 1) if f"synthesis.layer{i}.style.weight" not in state)
    if num_layers < 2 or num_layers % 2:
        raise CheckpointError(path, f"has {num_layers} styled layers; StyleGAN1 has 2 per block.", fix=_GENFORCE_FIX)
    resolutions = [2 ** (k + 2) for k in range(num_layers // 2)]
    w_dim, z_dim = src.shape("mapping.dense0.weight")
    config = stylegan1_config(
        resolution=resolutions[-1],
        z_dim=z_dim,
        w_dim=w_dim,
        channels={r: src.shape(f"synthesis.layer{2 * k}.style.weight")[0] // 2 for k, r in enumerate(resolutions)},
        img_channels=src.shape(f"synthesis.output{len(resolutions) - 1}.weight")[0],
        mapping_layers=next(i for i in range(len(state) + 1) if f"mapping.dense{i}.weight" not in state),
        mapping_lr_multiplier=GENFORCE_MAPPING_LR,
        fused_scale="auto",
        variant="nvidia",
    )
    out = _read_table(src, nvidia_tensors(config), "genforce")
    src.refuse_leftovers()
    assumed = dict(mapping_lr_mul=GENFORCE_MAPPING_LR, fused_scale="auto", final_tanh=False)
    return ParsedCheckpoint(config, out, dict(format="genforce", source_file=str(path), assumed=assumed))


def genforce_state_dict(G: StyleGAN1Generator) -> dict[str, torch.Tensor]:
    """G's tensors under genforce's names and shapes (lower-resolution ToRGBs, unused at lod 0, as zeros)."""
    for key, value in (("variant", "nvidia"), ("mapping_lr_multiplier", GENFORCE_MAPPING_LR), ("fused_scale", "auto")):
        if G.config[key] != value:
            raise ValueError(f"cannot write as genforce: its files imply {key}={value!r}, not {G.config[key]!r}")
    return _write_table(G, "genforce")


def write_genforce_checkpoint(G: StyleGAN1Generator, path: str | os.PathLike) -> None:
    """Write G as genforce's converter does: dict(generator=, discriminator=, generator_smooth=), atomically.
    generator and generator_smooth both hold G; the discriminator is an empty state dict (there is none here)."""
    state = genforce_state_dict(G)
    checkpoint = {"generator": state, "discriminator": {}, "generator_smooth": {k: v.clone() for k, v in state.items()}}
    atomic_write(path, lambda f: torch.save(checkpoint, f))


# ---- TensorFlow pickles --------------------------------------------------------------------------------
class TFNetworkRecord:
    """One pickled dnnlib.tflib.network.Network kept as data: `state` is its __getstate__ dict."""

    def __init__(self, state: dict):
        self._state = dict(state)

    def __setstate__(self, state) -> None:  # what unpickling calls after creating the record
        self._state = state

    def __reduce_ex__(self, protocol):  # pickles as NVIDIA's do: the class, no arguments, then the state
        return copyreg.__newobj__, (type(self),), self.state

    @property
    def state(self) -> dict:
        state = self.__dict__.get("_state")
        return state if isinstance(state, dict) else {}

    @property
    def func_name(self) -> str:
        return str(self.state.get("build_func_name"))

    @property
    def static_kwargs(self) -> dict:
        kwargs = self.state.get("static_kwargs")
        return dict(kwargs) if isinstance(kwargs, Mapping) else {}

    def component(self, name: str) -> TFNetworkRecord | None:
        child = (self.state.get("components") or {}).get(name)
        return child if isinstance(child, TFNetworkRecord) else None


_TF_ALLOWED_GLOBALS = {
    TF_NETWORK: TFNetworkRecord,
    **{
        key: value
        for key, value in _ALLOWED_GLOBALS.items()
        if key[0].startswith("numpy") or key in {("collections", "OrderedDict"), ("dnnlib.util", "EasyDict")}
    },
}


def is_tensorflow_pickle(path: str | os.PathLike) -> bool:
    """Whether the pickle's first global is dnnlib.tflib.network.Network, as in every TensorFlow StyleGAN pickle.
    Reads opcodes only (pickletools), so nothing in the file runs."""
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for count, (opcode, arg, _) in enumerate(pickletools.genops(f)):
                if opcode.name in ("GLOBAL", "INST"):
                    return tuple(arg.split(" ", 1)) == TF_NETWORK
                if opcode.name == "STACK_GLOBAL":
                    return tuple(strings[-2:]) == TF_NETWORK
                if isinstance(arg, str) and "UNICODE" in opcode.name:
                    strings.append(arg)
                if count >= _SCAN_OPCODES:
                    return False
    except (ValueError, EOFError, OSError):  # not a pickle, or it ends first
        return False
    return False


def read_tensorflow_pickle(path: str | os.PathLike) -> ParsedCheckpoint:
    """Gs of an NVIDIA TensorFlow StyleGAN1 snapshot as (config, our state dict, metadata); runs no pickled code."""
    path = pathlib.Path(path)
    try:
        data = _unpickle(path, _TF_ALLOWED_GLOBALS)
    except _RefusedGlobal as e:
        reads = "NVIDIA's network records, numpy arrays and containers"
        raise _refused(path, e, kind="TensorFlow StyleGAN pickle", reads=reads, fix=_TF_FIX) from None
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetworkRecord) for n in data)):
        found = f"a {type(data).__name__}" + (f" of {len(data)}" if isinstance(data, tuple) else "")
        raise CheckpointError(
            path, f"is a TensorFlow network pickle but not a snapshot (G, D, Gs); found {found}.", fix=_STYLEGAN2
        )
    networks = [data[2], data[2].component("mapping"), data[2].component("synthesis")]
    built_by = tuple(n.func_name if n else None for n in networks)
    if built_by != STYLEGAN1_BUILD_FUNCTIONS:
        raise CheckpointError(
            path,
            f"holds a generator built by {built_by}; only StyleGAN1's {STYLEGAN1_BUILD_FUNCTIONS} is read here.",
            fix=f"{_TF_FIX} {_STYLEGAN2}",
        )
    kwargs = {k: v for n in networks for k, v in n.static_kwargs.items()}
    for key, supported in _SUPPORTED_KWARGS.items():
        value = kwargs.get(key, supported)
        if (list(value) if isinstance(value, (list, tuple)) else value) != supported:
            raise CheckpointError(
                path,
                f"was built with {key}={value!r}; only {key}={supported!r} is implemented (the StyleGAN paper's "
                "generator: unconditional, styles, constant input, noise, lrelu, instance norm, [1,2,1] blur).",
                fix=_TF_FIX,
            )
    src = TensorSource(_variables(networks, path), path, what="TensorFlow StyleGAN", fix=_TF_FIX)
    resolutions = [4]
    while f"G_synthesis/{2 * resolutions[-1]}x{2 * resolutions[-1]}/Conv0_up/weight" in src.tensors:
        resolutions.append(2 * resolutions[-1])
    scopes = {r: "4x4/Const" if r == 4 else f"{r}x{r}/Conv0_up" for r in resolutions}
    z_dim, w_dim = src.shape("G_mapping/Dense0/weight")
    config = stylegan1_config(
        resolution=resolutions[-1],
        z_dim=z_dim,
        w_dim=w_dim,
        channels={r: src.shape(f"G_synthesis/{scopes[r]}/bias")[0] for r in resolutions},
        img_channels=src.shape("G_synthesis/ToRGB_lod0/bias")[0],
        mapping_layers=next(i for i in range(len(src.tensors)) if f"G_mapping/Dense{i}/weight" not in src.tensors),
        mapping_lr_multiplier=float(kwargs.get("mapping_lrmul", 0.01)),
        fused_scale=kwargs.get("fused_scale", "auto"),
        variant="nvidia",
    )
    out = _read_table(src, nvidia_tensors(config), "tf")
    src.refuse_leftovers()
    sampling = {k: kwargs[k] for k in ("truncation_psi", "truncation_cutoff") if k in kwargs}
    metadata = dict(format="nvidia-tensorflow-stylegan1", source_file=str(path), nvidia_sampling_defaults=sampling)
    return ParsedCheckpoint(config, out, metadata)


def _variables(networks: list[TFNetworkRecord], path: pathlib.Path) -> dict[str, torch.Tensor]:
    """The networks' variables as float32 tensors, each name prefixed by its network ('G_mapping/Dense0/weight')."""
    variables = {}
    for network in networks:
        for item in network.state.get("variables") or []:
            name, value = item if isinstance(item, tuple) and len(item) == 2 else (None, None)
            numeric = isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "fiub"
            if not (isinstance(name, str) and numeric):
                raise CheckpointError(path, f"has {item!r:.80} among {network.func_name}'s variables.", fix=_TF_FIX)
            variables[f"{network.func_name}/{name}"] = torch.from_numpy(np.array(value, dtype=np.float32))
    return variables


def _network(name: str, func_name: str, kwargs: dict, variables: list, components: dict | None = None):
    state = dict(
        version=3,
        name=name,
        static_kwargs=dict(kwargs),
        components=dict(components or {}),
        build_module_src=_SOURCE_NOT_EMBEDDED,
        build_func_name=func_name,
        variables=variables,
    )
    return TFNetworkRecord(state)


def tensorflow_snapshot(G: StyleGAN1Generator) -> tuple[TFNetworkRecord, TFNetworkRecord, TFNetworkRecord]:
    """(G, D, Gs) as NVIDIA's training loop pickles them, for G: G and Gs hold G's variables in TensorFlow's names
    and layouts (lower-resolution ToRGBs as zeros); D is a variable-free 'D_basic' record (there is no D here)."""
    cfg = G.config
    if cfg["variant"] != "nvidia":
        raise ValueError(f"cannot write variant {cfg['variant']!r} as a TensorFlow StyleGAN pickle (NVIDIA numerics)")
    variables = {func: [] for func in STYLEGAN1_BUILD_FUNCTIONS}
    for name, t in _write_table(G, "tf").items():
        func, local = name.split("/", 1)
        value = t.numpy().astype(np.float32)
        variables[func].append((local, value[()] if value.ndim == 0 else value))  # TensorFlow returns scalars bare
    kwargs = dict(
        num_channels=G.synthesis.img_channels,
        resolution=G.resolution,
        label_size=0,
        latent_size=G.z_dim,
        dlatent_size=G.w_dim,
        mapping_layers=cfg["mapping_layers"],
        mapping_lrmul=cfg["mapping_lr_multiplier"],
        fused_scale=cfg["fused_scale"],
    )

    def generator(name: str) -> TFNetworkRecord:
        components = {
            part: _network(func, func, kwargs, list(variables[func]))
            for part, func in (("synthesis", "G_synthesis"), ("mapping", "G_mapping"))
        }
        return _network(name, "G_style", kwargs, list(variables["G_style"]), components)

    D = _network("D", "D_basic", dict(num_channels=G.synthesis.img_channels, resolution=G.resolution), [])
    return generator("G"), D, generator("Gs")


class _TensorFlowPickler(pickle._Pickler):
    """The pure-Python pickler (its save_global can be overridden): TFNetworkRecord is written under NVIDIA's name
    dnnlib.tflib.network.Network, as STACK_GLOBAL like Python 3's protocol 4, so no NVIDIA module is needed."""

    def save_global(self, obj, name=None):
        if obj is not TFNetworkRecord:
            return super().save_global(obj, name)
        for part in TF_NETWORK:
            self.save(part)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def dump_tensorflow_snapshot(snapshot: tuple, path: str | os.PathLike) -> None:
    """Pickle (G, D, Gs) records atomically with protocol 4, as NVIDIA's misc.save_pkl did under Python 3.6."""
    atomic_write(path, lambda f: _TensorFlowPickler(f, protocol=4).dump(snapshot))


def write_tensorflow_pickle(G: StyleGAN1Generator, path: str | os.PathLike) -> None:
    """Write G as an NVIDIA TensorFlow StyleGAN1 snapshot that read_tensorflow_pickle reads back exactly. It has the
    structure and global names of NVIDIA's files but no module source, so NVIDIA's own loader cannot rebuild it."""
    dump_tensorflow_snapshot(tensorflow_snapshot(G), path)
