"""Base-code encoder E: X -> F (paper Eq. 2; BDInvert's design) and the files it is stored in.

Architecture (facts from kkang831/BDInvert_Release, models/stylegan_basecode_encoder.py): the input is
the image resized to 8x the base-code size s; log2(8) = 3 VGG-style stages, each 3 x [conv3x3,
BatchNorm, LeakyReLU 0.2] then AvgPool(2), with 128, 256, 512 channels (filter_min doubling up to
filter_max); then two 3x3 convs to the generator's base channels C, BatchNorm + LeakyReLU after the first
and nothing after the last. Convs are Kaiming-normal initialised (fan_out, leaky_relu gain), biases 0,
BatchNorm scale 1 and shift 0. Here the stage widths are an argument (small generators use narrower
stages) and the number of stages sets the input factor, 2**len(stage_channels) (8 for three stages).

Resizing. BDInvert resizes generated images with PIL's Lanczos filter after rounding them to uint8.
We resize in torch (batched, on the images' device, no uint8 rounding): bilinear with antialiasing when
downsampling, so that an 8x reduction (1024 -> 128 for FFHQ at s = 16) averages over the whole footprint
like Lanczos does instead of sampling every 8th pixel pair (aliasing); plain bilinear when upsampling,
where antialiasing changes nothing; no-op when the size already matches (the mini profile: 64 = 8 x 8).

Files. One format for final encoders and training checkpoints: a dict with the encoder's config and
state, the generator's config, a sha256 fingerprint of the generator's tensors and (checkpoints only)
a `training` entry. `load_encoder` refuses a file made for another generator or base size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fzplus.encoders.recipes import BASE_CODE
from fzplus.generator import Generator
from fzplus.images import resize_bilinear
from fzplus.io import atomic_write

FILE_FORMAT = "fzplus-base-code-encoder"
FILE_VERSION = 1
DEFAULT_STAGE_CHANNELS = BASE_CODE.stage_channels  # BDInvert: filter_min 128, doubling, filter_max 512
CONVS_PER_STAGE = 3


class EncoderFileError(ValueError):
    """An encoder file that cannot be used: unreadable, not an encoder, or made for another generator."""


def _conv_bn_lrelu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope=0.2),
    )


class BaseCodeEncoder(nn.Module):
    """Images [N, 3, H, H] in [-1, 1], any H (resized to 8s inside) -> base code f [N, C, s, s].

    Calling it directly keeps the BatchNorm mode it is in; `encode` is the inference entry point."""

    def __init__(
        self,
        *,
        base_size: int,
        out_channels: int,
        stage_channels: Sequence[int] = DEFAULT_STAGE_CHANNELS,
        in_channels: int = 3,
    ):
        super().__init__()
        if not stage_channels:
            raise ValueError("stage_channels must name at least one stage width")
        self.config = dict(
            base_size=int(base_size),
            out_channels=int(out_channels),
            stage_channels=[int(c) for c in stage_channels],
            in_channels=int(in_channels),
        )
        self.base_size, self.out_channels, self.in_channels = int(base_size), int(out_channels), int(in_channels)
        self.input_size = self.base_size * 2 ** len(stage_channels)
        layers: list[nn.Module] = []
        channels = in_channels
        for width in stage_channels:
            for _ in range(CONVS_PER_STAGE):
                layers.append(_conv_bn_lrelu(channels, width))
                channels = width
            layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
        layers.append(_conv_bn_lrelu(channels, out_channels))
        layers.append(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))  # no activation: f is signed
        self.layers = nn.Sequential(*layers)
        self._initialize()

    def _initialize(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.ndim == 4 and images.shape[1] == self.in_channels and images.shape[2] == images.shape[3], (
            f"encoder input must be square images [N, {self.in_channels}, H, H], got {tuple(images.shape)}"
        )
        f = self.layers(resize_bilinear(images, size=self.input_size))  # [N, C, s, s]
        assert f.shape[1:] == (self.out_channels, self.base_size, self.base_size)
        return f


def build_encoder(
    generator: Generator, *, base_size: int, stage_channels: Sequence[int] = DEFAULT_STAGE_CHANNELS
) -> BaseCodeEncoder:
    """An untrained encoder whose output fits `generator`'s base code at spatial size `base_size`."""
    generator.synthesis.split_position(base_size)  # raises a clear error for a size the generator has no split at
    encoder = BaseCodeEncoder(
        base_size=base_size,
        out_channels=generator.base_channels(base_size),
        stage_channels=stage_channels,
        in_channels=generator.synthesis.img_channels,
    )
    return encoder.to(generator.w_avg.device)


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def encode(encoder: BaseCodeEncoder, images: torch.Tensor, *, base_size: int) -> torch.Tensor:
    """Target images [N, 3, H, W] in [-1, 1] -> initial base code f0 [N, C, s, s] (BatchNorm in eval mode)."""
    if base_size != encoder.base_size:
        raise ValueError(
            f"this encoder predicts base codes of size {encoder.base_size}, not {base_size}; "
            f"train or load one for base_size={base_size}"
        )
    device = next(encoder.parameters()).device
    with _eval_mode(encoder):
        return encoder(images.to(device))


@torch.no_grad()
def mean_feature_map(generator: Generator, *, base_size: int, batch_size: int = 1) -> torch.Tensor:
    """Baseline base code without an encoder: features of w_avg at every layer, [batch_size, C, s, s]."""
    ws = generator.w_avg[None, None].expand(batch_size, generator.num_ws, generator.w_dim)
    return generator.features(ws, at=base_size).f


# ---- files ---------------------------------------------------------------------------------------------
def generator_fingerprint(generator: Generator) -> str:
    """sha256 over the names, shapes and float32 values of every parameter and buffer of `generator`."""
    digest = hashlib.sha256()
    for name, tensor in sorted(generator.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def encoder_payload(
    encoder: nn.Module,
    *,
    generator: Generator,
    fingerprint: str | None = None,
    file_format: str = FILE_FORMAT,
    version: int = FILE_VERSION,
) -> dict[str, Any]:
    """What an encoder file holds besides the training state (pass `fingerprint` to skip re-hashing); any
    encoder with a `config` dict of its constructor's arguments (file_format names which one)."""
    return dict(
        format=file_format,
        version=version,
        encoder_config=dict(encoder.config),
        encoder_state={k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        generator_config=dict(generator.config),
        generator_fingerprint=generator_fingerprint(generator) if fingerprint is None else fingerprint,
    )


def write_atomically(payload: dict[str, Any], path: str | os.PathLike) -> pathlib.Path:
    """torch.save through fzplus.io.atomic_write: readers never see half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: torch.save(payload, file))
    return path


def save_encoder(encoder: BaseCodeEncoder, path: str | os.PathLike, *, generator: Generator) -> pathlib.Path:
    """Write the trained encoder with what it was trained for (generator config and fingerprint)."""
    return write_atomically(encoder_payload(encoder, generator=generator), path)


def read_encoder_file(
    path: str | os.PathLike,
    *,
    file_format: str = FILE_FORMAT,
    version: int = FILE_VERSION,
    what: str = "base-code encoder",
    retrain_hint: str = "train one with fzplus.encoders.base_code_training.train_encoder",
) -> dict[str, Any]:
    """Load an encoder file or training checkpoint (weights_only) and check its format; no generator check.
    file_format / version / what / retrain_hint: for other encoders stored the same way (fzplus.encoders.domain)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} file here; {retrain_hint} or fix the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types (pickle, zip, EOF, RuntimeError) for one cause
        raise EncoderFileError(
            f"{path}: not a readable {what} file ({type(error).__name__}: {error}); delete it and retrain"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise EncoderFileError(f"{path}: not an fzplus {what} file (format key must be {file_format!r})")
    if payload.get("version") != version:
        raise EncoderFileError(
            f"{path}: {what} file version {payload.get('version')!r}, this code reads version {version}; retrain"
        )
    missing = [
        k for k in ("encoder_config", "encoder_state", "generator_config", "generator_fingerprint") if k not in payload
    ]
    if missing:
        raise EncoderFileError(f"{path}: {what} file lacks key(s) {missing}; delete it and retrain")
    return payload


def check_generator_match(
    payload: dict[str, Any], path: str | os.PathLike, *, generator: Generator, fingerprint: str | None = None
) -> None:
    """Raise EncoderFileError naming `path` if the file was made for another generator (config or weights)."""
    config = dict(generator.config)
    differing = sorted(
        k for k in set(config) | set(payload["generator_config"]) if config.get(k) != payload["generator_config"].get(k)
    )
    if differing:
        detail = ", ".join(
            f"{k}: file {payload['generator_config'].get(k)!r} vs generator {config.get(k)!r}" for k in differing
        )
        raise EncoderFileError(
            f"{path}: encoder was trained for another generator configuration ({detail}); retrain it for this generator"
        )
    if payload["generator_fingerprint"] != (generator_fingerprint(generator) if fingerprint is None else fingerprint):
        raise EncoderFileError(
            f"{path}: encoder was trained for a generator with the same configuration but other weights; "
            "retrain it for this generator"
        )


def check_encoder_file(
    payload: dict[str, Any],
    path: str | os.PathLike,
    *,
    generator: Generator,
    base_size: int | None = None,
    fingerprint: str | None = None,
) -> None:
    """Raise EncoderFileError naming `path` if the file was made for another generator or base size."""
    check_generator_match(payload, path, generator=generator, fingerprint=fingerprint)
    stored_size = payload["encoder_config"].get("base_size")
    if base_size is not None and stored_size != base_size:
        raise EncoderFileError(
            f"{path}: encoder predicts base codes of size {stored_size}, not {base_size}; "
            f"train one for base_size={base_size}"
        )
    if payload["encoder_config"].get("out_channels") != generator.base_channels(stored_size):
        raise EncoderFileError(
            f"{path}: encoder outputs {payload['encoder_config'].get('out_channels')} channels, "
            f"the generator's base code at {stored_size} has {generator.base_channels(stored_size)}"
        )


def encoder_from_payload(
    payload: dict[str, Any], path: str | os.PathLike, *, device: torch.device | str = "cpu"
) -> BaseCodeEncoder:
    """Rebuild the encoder stored in a (checked) payload."""
    try:
        encoder = BaseCodeEncoder(**payload["encoder_config"])
        encoder.load_state_dict(payload["encoder_state"])
    except (TypeError, RuntimeError, ValueError) as error:
        raise EncoderFileError(
            f"{path}: encoder config and weights do not fit together ({error}); delete it and retrain"
        ) from error
    return encoder.to(device)


def load_encoder(path: str | os.PathLike, *, generator: Generator, base_size: int | None = None) -> BaseCodeEncoder:
    """Load a trained encoder (or the encoder in a training checkpoint) for `generator`; eval mode, on its device."""
    payload = read_encoder_file(path)
    check_encoder_file(payload, path, generator=generator, base_size=base_size)
    return encoder_from_payload(payload, path, device=generator.w_avg.device).eval()
