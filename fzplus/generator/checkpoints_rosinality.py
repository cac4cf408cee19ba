"""rosinality/stylegan2-pytorch `.pt` checkpoints: read into the suite's Generator, and written from it.

File facts (rosinality/stylegan2-pytorch model.py, convert_weight.py, train.py):
- train.py saves dict(g=, d=, g_ema=<state dict>, g_optim=, d_optim=, args=<argparse.Namespace>,
  ada_aug_p=); convert_weight.py saves dict(g_ema=, latent_avg=<w_avg [w_dim]>, ...).
- Mapping `style.{1..n_mlp}` (index 0 is PixelNorm, no weights): EqualLinear with lr_mul = lr_mlp (0.01
  by default, not stored): y = x (W lr_mul / sqrt(in))^T, then leaky_relu(y + b lr_mul, 0.2) sqrt(2);
  this is networks.FullyConnected, so the tensors are copied as they are.
- Synthesis: `input.input` [1, C, 4, 4]; StyledConv `conv1`, `convs.{2i}` (2x up), `convs.{2i+1}` with
  conv.weight [1, O, I, k, k], conv.modulation (EqualLinear, bias_init 1), noise.weight [1] (times the
  buffer `noises.noise_{j}` [1, 1, r, r], j = 0 at 4x4 then two per resolution) and activate.bias [O]
  (FusedLeakyReLU: lrelu(x + b) sqrt(2)); ToRGB `to_rgb1`, `to_rgbs.{i}` with conv.weight [1, 3, I, 1, 1],
  conv.modulation and bias [1, 3, 1, 1]. Blur and upsample kernels: 4 outer([1,3,3,1]) / 64.

Numerics. rosinality's ModulatedConv2d scales the weight by 1/sqrt(I k k) before modulating and then
demodulates with eps 1e-8; NVIDIA's SynthesisLayer (ours) applies no gain, because demodulation cancels
it except inside the eps term. Storing weight / sqrt(I k k) therefore gives rosinality's numbers exactly.
ToRGB's 1/sqrt(I) (no demodulation) is our ToRGBLayer.weight_gain, so its weight is copied. Upsampling
(transposed conv, then the blur) and the noise (added before bias and activation) are NVIDIA's too.
"""

from __future__ import annotations

import math
import os
import pathlib

import torch

from fzplus.generator.checkpoints_common import CheckpointError, ParsedCheckpoint
from fzplus.generator.networks import Generator
from fzplus.generator.ops import fir_filter_2d
from fzplus.io import atomic_write

ROSINALITY_MAPPING_LR = 0.01  # Generator(lr_mlp=0.01), never changed by rosinality's scripts; not in the file
_UNSUPPORTED = "SWAGAN, conditional and other modified rosinality models are not supported."


def _rosinality_kernel() -> torch.Tensor:
    return fir_filter_2d() * 4  # Blur(upsample_factor=2) and Upsample both scale the kernel by factor**2


def _layer_pairs(resolution: int) -> list[tuple[str, str, int, int | None, bool]]:
    """(rosinality prefix, our prefix, block resolution, noise buffer index or None for ToRGB, upsamples)."""
    pairs = [("conv1", "synthesis.b4.conv1", 4, 0, False), ("to_rgb1", "synthesis.b4.torgb", 4, None, False)]
    for i in range(int(math.log2(resolution)) - 2):
        r = 8 * 2**i
        pairs += [
            (f"convs.{2 * i}", f"synthesis.b{r}.conv0", r, 2 * i + 1, True),
            (f"convs.{2 * i + 1}", f"synthesis.b{r}.conv1", r, 2 * i + 2, False),
            (f"to_rgbs.{i}", f"synthesis.b{r}.torgb", r, None, True),
        ]
    return pairs


def _kernel_key(ros: str, noise: int | None) -> str:
    return f"{ros}.conv.blur.kernel" if noise is not None else f"{ros}.upsample.kernel"


def read_rosinality(checkpoint: dict, path: str | os.PathLike) -> ParsedCheckpoint:
    """A rosinality checkpoint dict (with 'g_ema', or a bare g_ema state dict) as (config, state dict, metadata)."""
    path = pathlib.Path(path)
    source = checkpoint.get("g_ema", checkpoint)
    if not isinstance(source, dict):
        raise CheckpointError(
            path, f"has a {type(source).__name__} under 'g_ema' where a state dict belongs.", fix=_UNSUPPORTED
        )
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        value = source.get(key)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                path, f"lacks the tensor '{key}' that every rosinality StyleGAN2 g_ema has.", fix=_UNSUPPORTED
            )
        used.add(key)
        return value

    n_mlp = next(i for i in range(len(source) + 1) if f"style.{i + 1}.weight" not in source)
    n_up = next(i for i in range(len(source) + 1) if f"to_rgbs.{i}.conv.weight" not in source)
    resolution = 4 * 2**n_up
    w_dim, z_dim = take("style.1.weight").shape
    state = {"synthesis.b4.const": take("input.input")[0]}
    for j in range(n_mlp):
        state[f"mapping.fc{j}.weight"], state[f"mapping.fc{j}.bias"] = (
            take(f"style.{j + 1}.weight"),
            take(f"style.{j + 1}.bias"),
        )
    channels = {}
    for ros, ours, r, noise, upsamples in _layer_pairs(resolution):
        weight = take(f"{ros}.conv.weight")[0]  # [O, I, k, k]
        state[f"{ours}.affine.weight"], state[f"{ours}.affine.bias"] = (
            take(f"{ros}.conv.modulation.weight"),
            take(f"{ros}.conv.modulation.bias"),
        )
        if noise is None:
            state[f"{ours}.weight"], state[f"{ours}.bias"] = weight, take(f"{ros}.bias").reshape(-1)
        else:
            state[f"{ours}.weight"] = weight / math.sqrt(weight[0].numel())
            state[f"{ours}.noise_strength"] = take(f"{ros}.noise.weight").reshape([])
            state[f"{ours}.noise_const"] = take(f"noises.noise_{noise}")[0, 0]
            state[f"{ours}.bias"] = take(f"{ros}.activate.bias")
            state[f"{ours}.resample_filter"] = fir_filter_2d()
            channels[r] = weight.shape[0]
        if upsamples and not torch.allclose(take(_kernel_key(ros, noise)).float(), _rosinality_kernel()):
            raise CheckpointError(
                path, f"has a blur kernel '{_kernel_key(ros, noise)}' other than [1,3,3,1].", fix=_UNSUPPORTED
            )
        state[f"synthesis.b{r}.resample_filter"] = fir_filter_2d()
    unknown = sorted(set(source) - used)
    if unknown:
        raise CheckpointError(
            path,
            f"has g_ema entries a StyleGAN2 generator does not: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}.",
            fix=_UNSUPPORTED,
        )
    metadata = dict(format="rosinality", source_file=str(path), assumed_mapping_lr_multiplier=ROSINALITY_MAPPING_LR)
    latent_avg = checkpoint.get("latent_avg") if source is not checkpoint else None
    if isinstance(latent_avg, torch.Tensor):
        state["mapping.w_avg"] = latent_avg.reshape(-1)
    config = dict(
        resolution=resolution,
        z_dim=int(z_dim),
        w_dim=int(w_dim),
        img_channels=int(state["synthesis.b4.torgb.weight"].shape[0]),
        channels=channels,
        mapping_layers=n_mlp,
        mapping_lr_multiplier=ROSINALITY_MAPPING_LR,
        conv_clamp=None,
    )
    return ParsedCheckpoint(config, state, metadata)


def rosinality_state_dict(G: Generator) -> dict[str, torch.Tensor]:
    """G's tensors under rosinality's names and layout, converted so that rosinality's model computes G."""
    cfg = G.config
    limits = [
        (
            G.z_dim == G.w_dim,
            f"rosinality has one style_dim for z and w; this generator has z_dim={G.z_dim}, w_dim={G.w_dim}",
        ),
        (cfg["conv_clamp"] is None, f"rosinality has no conv_clamp; this generator clamps at {cfg['conv_clamp']}"),
        (
            cfg["mapping_lr_multiplier"] == ROSINALITY_MAPPING_LR,
            f"rosinality files imply a mapping lr multiplier of {ROSINALITY_MAPPING_LR}; "
            f"this generator has {cfg['mapping_lr_multiplier']}",
        ),
        (cfg["img_channels"] == 3, f"rosinality's ToRGB has 3 channels; this generator has {cfg['img_channels']}"),
    ]
    for ok, problem in limits:
        if not ok:
            raise ValueError(f"cannot write as a rosinality checkpoint: {problem}.")
    ours = {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}
    state = {}
    for j in range(cfg["mapping_layers"]):
        state[f"style.{j + 1}.weight"], state[f"style.{j + 1}.bias"] = (
            ours[f"mapping.fc{j}.weight"],
            ours[f"mapping.fc{j}.bias"],
        )
    state["input.input"] = ours["synthesis.b4.const"][None]
    for ros, prefix, _, noise, upsamples in _layer_pairs(G.resolution):
        weight = ours[f"{prefix}.weight"]
        state[f"{ros}.conv.modulation.weight"], state[f"{ros}.conv.modulation.bias"] = (
            ours[f"{prefix}.affine.weight"],
            ours[f"{prefix}.affine.bias"],
        )
        if noise is None:
            state[f"{ros}.conv.weight"], state[f"{ros}.bias"] = (
                weight[None],
                ours[f"{prefix}.bias"].reshape(1, -1, 1, 1),
            )
        else:
            state[f"{ros}.conv.weight"] = (weight * math.sqrt(weight[0].numel()))[None]
            state[f"{ros}.noise.weight"] = ours[f"{prefix}.noise_strength"].reshape(1)
            state[f"{ros}.activate.bias"] = ours[f"{prefix}.bias"]
            state[f"noises.noise_{noise}"] = ours[f"{prefix}.noise_const"][None, None]
        if upsamples:
            state[_kernel_key(ros, noise)] = _rosinality_kernel()
    return state


def write_rosinality_checkpoint(G: Generator, path: str | os.PathLike, *, include_latent_avg: bool = True) -> None:
    """Write G as a rosinality `.pt` (convert_weight.py's layout: g_ema and latent_avg), atomically.

    rosinality's own code loads it into `Generator(size, 512, n_mlp, channel_multiplier)` when G's widths
    are that model's (e.g. 512 up to 32x32, then 256 * channel_multiplier at 64, ...); `load_generator`
    reads any widths. include_latent_avg=False writes a train.py-like file without w_avg.
    """
    checkpoint = {"g_ema": rosinality_state_dict(G)}
    if include_latent_avg:
        checkpoint["latent_avg"] = G.w_avg.detach().cpu().clone()
    atomic_write(path, lambda f: torch.save(checkpoint, f))
