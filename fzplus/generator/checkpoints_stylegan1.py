"""StyleGAN1 checkpoints: the reading helpers shared by the formats, and rosinality's style-based-gan-pytorch
`.model` files, read into fzplus.generator.stylegan1 state dicts and written (tests). NVIDIA's variable layout
(TensorFlow pickles and genforce's `.pth` conversions of them) is in checkpoints_stylegan1_nvidia.

rosinality (rosinality/style-based-gan-pytorch model.py StyledGenerator, train.py, generate.py):
- files: train.py's dict(generator=, discriminator=, g_optimizer=, d_optimizer=, g_running=) or a bare g_running
  state dict; g_running (the moving average) is what generate.py samples.
- StyledGenerator always holds 9 blocks (4 .. 1024 px) and renders 4 * 2**step px (`step`, `alpha` are forward
  arguments; generate.py: step = log2(size) - 2, alpha = 1). The file does not say how far it grew; blocks never
  trained keep their initial values exactly (Adam skips parameters without gradient), so the resolution is that of
  the last block that moved, unless given. Lower-resolution ToRGBs and the blocks above it are ignored.
- numerics differ from NVIDIA's and are converted: EqualLR scales every weight by sqrt(2 / fan_in) (fan_in =
  size(1) * kernel area), also the mapping (whose 0.01 is an optimizer lr multiplier, train.py), the AdaIN affine
  and ToRGB; AdaIN is gamma * norm(x) + beta with the affine's bias initialised to gamma = 1; noise weights are
  [1, C, 1, 1] under EqualLR (fan_in = C); the fused upsampling conv (blocks from 128 px) stores [in, out, 3, 3]
  and divides its summed 4x4 kernel by 4; the constant has no bias; InstanceNorm2d's eps is 1e-5 and the upsampling
  conv's bias precedes the blur: variant 'rosinality' of the generator. There is no stored noise: the constant
  noise maps are drawn from a seed, one per block, as rosinality feeds one map to both layers of a block.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping

import torch

from fzplus.generator.checkpoints_common import CheckpointError, ParsedCheckpoint
from fzplus.generator.stylegan1 import ARCHITECTURE, FUSED_SCALE_AUTO_MIN_RESOLUTION, StyleGAN1Generator, blur_filter
from fzplus.io import atomic_write

ROSINALITY_MAPPING_LR = 0.01  # train.py: the mapping's Adam group has lr * 0.01; not in the file
ROSINALITY_NOISE_SEED = 0
_ROSINALITY_ANCHOR = "generator.progression.0.conv1.input"
_ROSINALITY_FIX = "Expected a rosinality/style-based-gan-pytorch StyledGenerator checkpoint (train_step-*.model)."


class TensorSource:
    """A checkpoint's tensors by name. `take` checks type and shape and marks the tensor read; errors name the
    file and the key. `refuse_leftovers` names what a StyleGAN1 generator of the format does not have."""

    def __init__(self, tensors: Mapping, path: str | os.PathLike, *, what: str, fix: str):
        self.tensors, self.path, self.what, self.fix = tensors, pathlib.Path(path), what, fix
        self.used: set[str] = set()

    def peek(self, key: str) -> torch.Tensor:
        """The tensor under `key`, not marked read; a clear error if there is none."""
        value = self.tensors.get(key)
        if not isinstance(value, torch.Tensor):
            found = "nothing" if value is None else f"a {type(value).__name__}"
            raise CheckpointError(self.path, f"lacks the {self.what} tensor '{key}' (found {found}).", fix=self.fix)
        return value

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.peek(key).shape)

    def take(self, key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if self.shape(key) != tuple(shape):
            raise CheckpointError(
                self.path,
                f"has {self.what} tensor '{key}' of shape {self.shape(key)}, expected {tuple(shape)}.",
                fix=self.fix,
            )
        self.used.add(key)
        return self.tensors[key].detach().to("cpu", torch.float32)

    def check_filter(self, key: str, channels: int) -> None:
        """A stored blur kernel [channels, 1, 3, 3] must be the normalised [1, 2, 1] filter."""
        if not torch.allclose(self.take(key, (channels, 1, 3, 3)), blur_filter().expand(channels, 1, 3, 3)):
            raise CheckpointError(self.path, f"has a blur kernel '{key}' other than [1, 2, 1].", fix=self.fix)

    def refuse_leftovers(self) -> None:
        unknown = sorted(set(map(str, self.tensors)) - self.used)
        if unknown:
            raise CheckpointError(
                self.path,
                f"has entries a {self.what} does not: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}.",
                fix=self.fix,
            )


def stylegan1_config(
    *, resolution: int, z_dim: int, w_dim: int, channels: dict, img_channels: int, mapping_layers: int, **variant
) -> dict:
    """StyleGAN1Generator keyword arguments (its `config`), from what a reader found in a file."""
    return dict(
        architecture=ARCHITECTURE,
        resolution=int(resolution),
        z_dim=int(z_dim),
        w_dim=int(w_dim),
        img_channels=int(img_channels),
        channels={int(r): int(c) for r, c in channels.items()},
        mapping_layers=int(mapping_layers),
        **variant,
    )


# ---- rosinality ------------------------------------------------------------------------------------------
def _rosinality_prefixes(block: int) -> tuple[str, str, str, str]:
    """Keys of block `block`: (first conv, non-fused upsampling conv, fused upsampling conv, block prefix)."""
    p = f"generator.progression.{block}"
    return f"{p}.conv1", f"{p}.conv1.1.conv", f"{p}.conv1.0", p


def _rosinality_trained(src: TensorSource, block: int) -> bool:
    """Whether a block moved from rosinality's initial values (noise and conv biases 0, AdaIN bias [1, 0])."""
    _, plain, fused, p = _rosinality_prefixes(block)
    zero_at_init = [f"{p}.conv2.conv.bias", f"{p}.noise1.weight_orig", f"{p}.noise2.weight_orig"]
    zero_at_init += [key for key in (f"{plain}.bias", f"{fused}.bias") if key in src.tensors]
    moved = any(bool(src.peek(key).any()) for key in zero_at_init)
    for j in (1, 2):
        bias = src.peek(f"{p}.adain{j}.style.linear.bias").float()
        c = bias.shape[0] // 2
        moved |= not torch.equal(bias, torch.cat([torch.ones(c), torch.zeros(c)]))
    return moved


def rosinality_stylegan1_state(content: object) -> dict | None:
    """The StyledGenerator state dict in a torch file's content (g_running first), or None if there is none."""
    if not isinstance(content, Mapping):
        return None
    for candidate in (content.get("g_running"), content.get("generator"), content):
        if isinstance(candidate, Mapping) and _ROSINALITY_ANCHOR in candidate:
            return dict(candidate)
    return None


def read_rosinality_stylegan1(
    content: Mapping, path: str | os.PathLike, *, resolution: int | None = None
) -> ParsedCheckpoint:
    """A rosinality StyledGenerator checkpoint's content as (config, our state dict, metadata); see the module
    docstring. resolution: the output size to build (default: inferred from the blocks that trained)."""
    state = rosinality_stylegan1_state(content)
    if state is None:
        raise CheckpointError(path, f"has no StyledGenerator state ('{_ROSINALITY_ANCHOR}').", fix=_ROSINALITY_FIX)
    src = TensorSource(state, path, what="rosinality StyledGenerator", fix=_ROSINALITY_FIX)
    n_blocks = next(i for i in range(len(state)) if f"generator.progression.{i}.adain1.style.linear.bias" not in state)
    trained = [b for b in range(n_blocks) if _rosinality_trained(src, b)]
    if resolution is None:
        top, resolution_source = (max(trained) if trained else n_blocks - 1), "inferred: the last trained block"
    else:
        top, resolution_source = int(math.log2(resolution)) - 2, "given"
        if not (0 <= top < n_blocks and 4 * 2**top == resolution):
            raise CheckpointError(
                path, f"has blocks for 4 .. {4 * 2 ** (n_blocks - 1)} px; {resolution} px is not one."
            )
    resolution = 4 * 2**top
    mapping_layers = next(j for j in range(len(state)) if f"style.{2 * j + 1}.linear.weight_orig" not in state)
    w_dim, z_dim = src.shape("style.1.linear.weight_orig")
    out, channels, fused_blocks = {}, {}, set()
    for j in range(mapping_layers):
        key = f"style.{2 * j + 1}.linear"
        out[f"mapping.fc{j}.weight"] = (
            src.take(f"{key}.weight_orig", (w_dim, z_dim if j == 0 else w_dim)) / ROSINALITY_MAPPING_LR
        )
        out[f"mapping.fc{j}.bias"] = src.take(f"{key}.bias", (w_dim,)) / ROSINALITY_MAPPING_LR
    noise = torch.Generator().manual_seed(ROSINALITY_NOISE_SEED)
    for b in range(top + 1):
        r, (first, plain, fused, p) = 4 * 2**b, _rosinality_prefixes(b)
        c = src.shape(f"{p}.adain1.style.linear.bias")[0] // 2
        channels[r] = c
        if b == 0:
            out["synthesis.b4.const"] = src.take(f"{first}.input", (1, c, 4, 4))[0]
            out["synthesis.b4.conv0.bias"] = torch.zeros(c)
        elif f"{fused}.weight" in state:
            fused_blocks.add(r)
            out[f"synthesis.b{r}.conv0.weight"] = (
                src.take(f"{fused}.weight", (channels[r // 2], c, 3, 3)).transpose(0, 1) / 4
            )
            out[f"synthesis.b{r}.conv0.bias"] = src.take(f"{fused}.bias", (c,))
            for blur in ("weight", "weight_flip"):
                src.check_filter(f"{first}.1.{blur}", c)
        else:
            out[f"synthesis.b{r}.conv0.weight"] = src.take(f"{plain}.weight_orig", (c, channels[r // 2], 3, 3))
            out[f"synthesis.b{r}.conv0.bias"] = src.take(f"{plain}.bias", (c,))
            for blur in ("weight", "weight_flip"):
                src.check_filter(f"{first}.2.{blur}", c)
        out[f"synthesis.b{r}.conv1.weight"] = src.take(f"{p}.conv2.conv.weight_orig", (c, c, 3, 3))
        out[f"synthesis.b{r}.conv1.bias"] = src.take(f"{p}.conv2.conv.bias", (c,))
        noise_map = torch.randn(r, r, generator=noise)
        for j in (0, 1):
            ours = f"synthesis.b{r}.conv{j}"
            strength = src.take(f"{p}.noise{j + 1}.weight_orig", (1, c, 1, 1)).reshape(c)
            out[f"{ours}.noise_strength"] = strength * math.sqrt(2 / c)
            out[f"{ours}.noise_const"] = noise_map.clone()
            weight = src.take(f"{p}.adain{j + 1}.style.linear.weight_orig", (2 * c, w_dim))
            out[f"{ours}.affine.weight"] = weight * math.sqrt(2)
            gamma_one = torch.cat([torch.ones(c), torch.zeros(c)])
            out[f"{ours}.affine.bias"] = src.take(f"{p}.adain{j + 1}.style.linear.bias", (2 * c,)) - gamma_one
    rgb_shape = src.shape(f"generator.to_rgb.{top}.conv.weight_orig")
    out["synthesis.torgb.weight"] = src.take(
        f"generator.to_rgb.{top}.conv.weight_orig", (rgb_shape[0], channels[resolution], 1, 1)
    ) * math.sqrt(2)
    out["synthesis.torgb.bias"] = src.take(f"generator.to_rgb.{top}.conv.bias", (rgb_shape[0],))
    ignored = [f"generator.progression.{b}" for b in range(top + 1, n_blocks)] + [
        f"generator.to_rgb.{b}" for b in range(n_blocks) if b != top
    ]
    src.used.update(k for k in map(str, state) if any(k.startswith(prefix + ".") for prefix in ignored))
    src.refuse_leftovers()
    auto = {r for r in channels if FUSED_SCALE_AUTO_MIN_RESOLUTION <= r}
    upsampling = set(channels) - {4}
    fused_scale = next(
        (option for option, blocks in (("auto", auto), (True, upsampling), (False, set())) if blocks == fused_blocks),
        None,
    )
    if fused_scale is None:
        raise CheckpointError(
            path,
            f"fuses upsampling at {sorted(fused_blocks)} px, neither none, all nor those from 128 px.",
            fix=_ROSINALITY_FIX,
        )
    config = stylegan1_config(
        resolution=resolution,
        z_dim=z_dim,
        w_dim=w_dim,
        channels=channels,
        img_channels=rgb_shape[0],
        mapping_layers=mapping_layers,
        mapping_lr_multiplier=ROSINALITY_MAPPING_LR,
        fused_scale=fused_scale,
        variant="rosinality",
    )
    metadata = dict(
        format="rosinality-stylegan1",
        source_file=str(path),
        resolution_source=resolution_source,
        trained_blocks=[4 * 2**b for b in trained],
        assumed_mapping_lr_multiplier=ROSINALITY_MAPPING_LR,
        noise_const=f"drawn (seed {ROSINALITY_NOISE_SEED}), one map per block for both its layers",
    )
    return ParsedCheckpoint(config, out, metadata)


def rosinality_stylegan1_state_dict(G: StyleGAN1Generator, *, untrained_blocks: int = 0) -> dict[str, torch.Tensor]:
    """G's tensors under rosinality's StyledGenerator names, converted so that rosinality's forward at
    step = log2(R) - 2, alpha = 1 computes G's images (with G's noise maps, which the format cannot hold).

    G must be of variant 'rosinality' (the numerics the file implies) with z_dim == w_dim (one code_dim).
    Lower-resolution ToRGBs (unused at alpha = 1) are zeros. untrained_blocks: blocks above R at rosinality's
    initial values (seeded, G's last width), as in the file of a model that stopped growing at R.
    """
    cfg = G.config
    if cfg["variant"] != "rosinality" or G.z_dim != G.w_dim:
        raise ValueError(
            "cannot write as a rosinality StyledGenerator: it needs variant 'rosinality' (InstanceNorm2d's eps, "
            f"bias before blur) and one code_dim for z and w; this generator has variant {cfg['variant']!r}, "
            f"z_dim {G.z_dim}, w_dim {G.w_dim}"
        )
    ours = {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}
    lr = cfg["mapping_lr_multiplier"]
    state = {}
    for j in range(cfg["mapping_layers"]):
        state[f"style.{2 * j + 1}.linear.weight_orig"] = ours[f"mapping.fc{j}.weight"] * lr
        state[f"style.{2 * j + 1}.linear.bias"] = ours[f"mapping.fc{j}.bias"] * lr
    channels, img_channels = G.synthesis.channels, G.synthesis.img_channels
    for b, r in enumerate(G.synthesis.block_resolutions):
        (first, plain, fused, p), c, conv0 = _rosinality_prefixes(b), channels[r], f"synthesis.b{r}.conv0"
        if b == 0:  # no bias at the constant: fold ours into it
            state[f"{first}.input"] = (ours["synthesis.b4.const"] + ours[f"{conv0}.bias"][:, None, None])[None]
        elif G.synthesis.layer(G.synthesis.layer_specs[2 * b]).fused:
            state[f"{fused}.weight"], state[f"{fused}.bias"] = (
                (ours[f"{conv0}.weight"] * 4).transpose(0, 1),
                ours[f"{conv0}.bias"],
            )
            state[f"{first}.1.weight"] = state[f"{first}.1.weight_flip"] = blur_filter().expand(c, 1, 3, 3).clone()
        else:
            state[f"{plain}.weight_orig"], state[f"{plain}.bias"] = ours[f"{conv0}.weight"], ours[f"{conv0}.bias"]
            state[f"{first}.2.weight"] = state[f"{first}.2.weight_flip"] = blur_filter().expand(c, 1, 3, 3).clone()
        state[f"{p}.conv2.conv.weight_orig"] = ours[f"synthesis.b{r}.conv1.weight"]
        state[f"{p}.conv2.conv.bias"] = ours[f"synthesis.b{r}.conv1.bias"]
        for j in (0, 1):
            layer = f"synthesis.b{r}.conv{j}"
            state[f"{p}.noise{j + 1}.weight_orig"] = (ours[f"{layer}.noise_strength"] / math.sqrt(2 / c)).reshape(
                1, c, 1, 1
            )
            state[f"{p}.adain{j + 1}.style.linear.weight_orig"] = ours[f"{layer}.affine.weight"] / math.sqrt(2)
            gamma_one = torch.cat([torch.ones(c), torch.zeros(c)])
            state[f"{p}.adain{j + 1}.style.linear.bias"] = ours[f"{layer}.affine.bias"] + gamma_one
        last = r == G.resolution
        state[f"generator.to_rgb.{b}.conv.weight_orig"] = (
            ours["synthesis.torgb.weight"] / math.sqrt(2) if last else torch.zeros(img_channels, c, 1, 1)
        )
        state[f"generator.to_rgb.{b}.conv.bias"] = ours["synthesis.torgb.bias"] if last else torch.zeros(img_channels)
    state.update(
        _rosinality_initial_blocks(len(channels), untrained_blocks, channels[G.resolution], G.w_dim, img_channels)
    )
    return state


def _rosinality_initial_blocks(first_block: int, count: int, c: int, w_dim: int, img_channels: int) -> dict:
    """`count` non-fused blocks from index first_block at the values rosinality's constructors give (seeded)."""
    g, state = torch.Generator().manual_seed(first_block), {}
    for b in range(first_block, first_block + count):
        first, plain, _, p = _rosinality_prefixes(b)
        state[f"{plain}.weight_orig"], state[f"{plain}.bias"] = torch.randn(c, c, 3, 3, generator=g), torch.zeros(c)
        state[f"{first}.2.weight"] = state[f"{first}.2.weight_flip"] = blur_filter().expand(c, 1, 3, 3).clone()
        state[f"{p}.conv2.conv.weight_orig"], state[f"{p}.conv2.conv.bias"] = (
            torch.randn(c, c, 3, 3, generator=g),
            torch.zeros(c),
        )
        for j in (1, 2):
            state[f"{p}.noise{j}.weight_orig"] = torch.zeros(1, c, 1, 1)
            state[f"{p}.adain{j}.style.linear.weight_orig"] = torch.randn(2 * c, w_dim, generator=g)
            state[f"{p}.adain{j}.style.linear.bias"] = torch.cat([torch.ones(c), torch.zeros(c)])
        state[f"generator.to_rgb.{b}.conv.weight_orig"] = torch.randn(img_channels, c, 1, 1, generator=g)
        state[f"generator.to_rgb.{b}.conv.bias"] = torch.zeros(img_channels)
    return state


def write_rosinality_stylegan1_checkpoint(
    G: StyleGAN1Generator, path: str | os.PathLike, *, untrained_blocks: int = 0
) -> None:
    """Write G as rosinality's train.py names its models: dict(generator=, g_running=), both G, atomically
    (the optimizer and discriminator entries of train_step-*.model are left out)."""
    state = rosinality_stylegan1_state_dict(G, untrained_blocks=untrained_blocks)
    checkpoint = {"generator": state, "g_running": {k: v.clone() for k, v in state.items()}}
    atomic_write(path, lambda f: torch.save(checkpoint, f))
