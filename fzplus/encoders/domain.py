"""IDInvert's domain-guided encoder E: X -> W+ and its domain term (Zhu et al. 2020, genforce/idinvert).

Facts from the sources and what differs here (each deviation is the generator's size or the CPU budget):
- Architecture: a 5x5 conv at full resolution, then residual blocks (two 3x3 convs with BatchNorm and
  LeakyReLU 0.2, a 1x1 shortcut where the width changes, 2x average pooling) down to 4x4, then one dense
  layer to num_ws x w_dim. IDInvert's widths start at 64 and double up to 1024; here `channel_base` and
  `channel_max` are arguments (the mini generator's are 8x smaller). IDInvert ends with a BatchNorm of the
  codes; here the dense layer starts at zero and its output is added to w_avg, so an untrained encoder
  answers w_avg (where every other W-type inversion starts) and training, short on a CPU, refines from there.
  `dense_rank` (default None: IDInvert's full dense layer) factors the dense layer through a rank-r
  bottleneck; the full layer is 16 * C * num_ws * w_dim weights (84 MB in float32 for the mini generator,
  whose committed encoder uses rank 128 and is 12 MB; held-out MSE after 800 steps: full layer 0.0124,
  rank 128 from the start 0.0166, w_avg 0.213).
- Domain-regularised optimisation (the `idinvert` space plugin): w starts at E(x) and pays
  lambda_domain * mean((w - E(G(w)))^2) (IDInvert: 2.0), E in eval mode. The term is exactly zero at a
  code that E maps back to itself.

Files use fzplus.encoders.base_code's format (config, state, generator config and fingerprint) under their own
format name, so `load_domain_encoder` refuses a file made for another generator.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import torch
from torch import nn

from fzplus.encoders.base_code import (
    EncoderFileError,
    check_generator_match,
    encoder_payload,
    read_encoder_file,
    write_atomically,
)
from fzplus.encoders.recipes import DOMAIN
from fzplus.generator import Generator
from fzplus.images import resize_bilinear

FILE_FORMAT = "fzplus-idinvert-encoder"
FILE_VERSION = 1
DEFAULT_CHANNEL_BASE, DEFAULT_CHANNEL_MAX = DOMAIN.channel_base, DOMAIN.channel_max  # IDInvert's widths
RETRAIN_HINT = (
    "train one with fzplus.encoders.domain_training.train_domain_encoder (bootstrap rule train_mini_idinvert_encoder)"
)


def _conv_bn_lrelu(in_channels: int, out_channels: int, *, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.2),
    )


class ResidualDownBlock(nn.Module):
    """[N, C_in, r, r] -> [N, C_out, r/2, r/2]: two 3x3 convs plus a shortcut, then 2x average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_lrelu(in_channels, in_channels, kernel_size=3),
            _conv_bn_lrelu(in_channels, out_channels, kernel_size=3),
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x) + self.shortcut(x))


class DomainEncoder(nn.Module):
    """Images [N, 3, H, H] in [-1, 1] (resized to the generator's resolution inside) -> ws [N, num_ws, w_dim].

    Calling it keeps the BatchNorm mode it is in; `encode_ws` is the inference entry point."""

    def __init__(
        self,
        *,
        resolution: int,
        num_ws: int,
        w_dim: int,
        channel_base: int = DEFAULT_CHANNEL_BASE,
        channel_max: int = DEFAULT_CHANNEL_MAX,
        dense_rank: int | None = None,
        in_channels: int = 3,
    ):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        if dense_rank is not None and dense_rank < 1:
            raise ValueError(f"dense_rank must be a positive integer or None (full dense layer), got {dense_rank}")
        self.config = dict(
            resolution=int(resolution),
            num_ws=int(num_ws),
            w_dim=int(w_dim),
            channel_base=int(channel_base),
            channel_max=int(channel_max),
            dense_rank=None if dense_rank is None else int(dense_rank),
            in_channels=int(in_channels),
        )
        self.resolution, self.num_ws, self.w_dim = int(resolution), int(num_ws), int(w_dim)
        halvings = resolution.bit_length() - 3  # resolution -> 4
        widths = [min(channel_base * 2**i, channel_max) for i in range(halvings + 1)]
        self.first = _conv_bn_lrelu(in_channels, widths[0], kernel_size=5)
        self.blocks = nn.Sequential(*(ResidualDownBlock(a, b) for a, b in zip(widths, widths[1:])))
        out = nn.Linear(widths[-1] * 16 if dense_rank is None else dense_rank, num_ws * w_dim)
        nn.init.zeros_(out.weight)  # the bottleneck before it keeps its random start, so gradients reach both
        nn.init.zeros_(out.bias)
        self.dense = (
            out if dense_rank is None else nn.Sequential(nn.Linear(widths[-1] * 16, dense_rank, bias=False), out)
        )
        self.register_buffer("w_offset", torch.zeros(w_dim))  # the generator's w_avg (set by build_domain_encoder)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.ndim == 4 and images.shape[2] == images.shape[3], (
            f"encoder input must be square images [N, 3, H, H], got {tuple(images.shape)}"
        )
        x = self.blocks(self.first(resize_bilinear(images, size=self.resolution)))  # [N, C, 4, 4]
        ws = self.dense(x.flatten(1)).view(-1, self.num_ws, self.w_dim) + self.w_offset
        return ws


def build_domain_encoder(
    generator: Generator,
    *,
    channel_base: int = DEFAULT_CHANNEL_BASE,
    channel_max: int = DEFAULT_CHANNEL_MAX,
    dense_rank: int | None = None,
) -> DomainEncoder:
    """An untrained encoder for `generator`'s W+ (it answers w_avg for every image)."""
    encoder = DomainEncoder(
        resolution=generator.resolution,
        num_ws=generator.num_ws,
        w_dim=generator.w_dim,
        channel_base=channel_base,
        channel_max=channel_max,
        dense_rank=dense_rank,
        in_channels=generator.synthesis.img_channels,
    )
    encoder.w_offset.copy_(generator.w_avg.detach().cpu())
    return encoder.to(generator.w_avg.device)


@torch.no_grad()
def encode_ws(encoder: DomainEncoder, images: torch.Tensor) -> torch.Tensor:
    """Target images [N, 3, H, W] in [-1, 1] -> starting codes E(x) [N, num_ws, w_dim]."""
    if encoder.training:
        raise ValueError(
            "the encoder is in training mode; call encoder.eval() so that per-image codes do not depend on the batch"
        )
    return encoder(images.to(encoder.w_offset.device))


def domain_distance(encoder: DomainEncoder, generator: Generator, ws: torch.Tensor) -> torch.Tensor:
    """mean((ws - E(G(ws)))^2) per image [N], differentiable in ws [N, num_ws, w_dim] (E in eval mode)."""
    if encoder.training:
        raise ValueError(
            "the encoder is in training mode; call encoder.eval() (BatchNorm statistics must not follow the batch)"
        )
    assert ws.ndim == 3 and ws.shape[1:] == (encoder.num_ws, encoder.w_dim), (
        f"ws must be [N, {encoder.num_ws}, {encoder.w_dim}], got {tuple(ws.shape)}"
    )
    return (ws - encoder(generator.synthesize(ws))).square().flatten(1).mean(dim=1)


# ---- files ---------------------------------------------------------------------------------------------
def domain_encoder_payload(
    encoder: DomainEncoder, *, generator: Generator, fingerprint: str | None = None
) -> dict[str, Any]:
    return encoder_payload(
        encoder, generator=generator, fingerprint=fingerprint, file_format=FILE_FORMAT, version=FILE_VERSION
    )


def save_domain_encoder(encoder: DomainEncoder, path: str | os.PathLike, *, generator: Generator) -> pathlib.Path:
    """Write the trained encoder with the generator config and fingerprint it was trained for."""
    return write_atomically(domain_encoder_payload(encoder, generator=generator), path)


def read_domain_encoder_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load an IDInvert encoder file or training checkpoint and check its format; no generator check."""
    return read_encoder_file(
        path, file_format=FILE_FORMAT, version=FILE_VERSION, what="IDInvert encoder", retrain_hint=RETRAIN_HINT
    )


def domain_encoder_from_payload(
    payload: dict[str, Any], path: str | os.PathLike, *, generator: Generator
) -> DomainEncoder:
    """Rebuild the encoder of a payload, after checking that it was made for `generator`."""
    check_generator_match(payload, path, generator=generator)
    expected = dict(resolution=generator.resolution, num_ws=generator.num_ws, w_dim=generator.w_dim)
    stored = {k: payload["encoder_config"].get(k) for k in expected}
    if stored != expected:
        raise EncoderFileError(
            f"{path}: IDInvert encoder outputs {stored}, the generator needs {expected}; retrain it for this generator"
        )
    try:
        encoder = DomainEncoder(**payload["encoder_config"])
        encoder.load_state_dict(payload["encoder_state"])
    except (TypeError, RuntimeError, ValueError) as error:
        raise EncoderFileError(
            f"{path}: IDInvert encoder config and weights do not fit together ({error}); delete it and retrain"
        ) from error
    return encoder.to(generator.w_avg.device)


def load_domain_encoder(path: str | os.PathLike, *, generator: Generator) -> DomainEncoder:
    """Load a trained IDInvert encoder (or the one in a training checkpoint) for `generator`; eval mode."""
    return domain_encoder_from_payload(read_domain_encoder_file(path), path, generator=generator).eval()
