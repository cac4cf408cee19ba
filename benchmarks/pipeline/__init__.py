"""One function per pipeline stage, called by the thin scripts of workflow/scripts/ (and usable without
Snakemake). Each takes the validated config (fzplus.config.load_config) and explicit input/output paths.
This module holds what every stage shares: device, threads, the pipeline's generator, perceptual net.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from fzplus.generator import Generator, load_generator

# each target set's identity sweep: its file in edits/<slug>/, and the identity metric it feeds
# (benchmarks.statistics.editing) with the name of the set in tables and figures
IDENTITY_FILES = {"identity": "identity.csv", "identity_in_domain": "identity_in_domain.csv"}
TARGET_SETS = {"identity": "real", "identity_in_domain": "in-domain"}


class StageError(RuntimeError):
    """A stage cannot run; the message says which file or key and how to fix it."""


def device_of(cfg: Mapping[str, Any]) -> torch.device:
    wanted = cfg["device"]
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise StageError("config device is 'cuda' but torch sees no GPU; set device: cpu (or auto) in the profile")
    return torch.device(wanted)


def use_threads(threads: int | None) -> None:
    """Snakemake gives each job its thread budget; torch must not spin more OpenMP threads than that."""
    if threads:
        torch.set_num_threads(int(threads))


def pipeline_generator(path: str | os.PathLike, cfg: Mapping[str, Any]) -> Generator:
    """The run's generator (own format, written by the `generator` stage), frozen, noise as configured."""
    G = load_generator(path, device=device_of(cfg))
    G.noise_mode = cfg["generator"]["noise_mode"]
    return G.eval().requires_grad_(False)


def truncation(cfg: Mapping[str, Any]) -> dict:
    g = cfg["generator"]
    return dict(truncation_psi=g["truncation_psi"], truncation_cutoff=g["truncation_cutoff"])


def perceptual_distance(cfg: Mapping[str, Any], *, device: torch.device):
    """The configured perceptual net (frozen); lpips-vgg takes its VGG16 weights from the asset, when declared."""
    from fzplus.perceptual import build_perceptual
    from fzplus.planning import materialize_config_assets

    p = cfg["perceptual"]
    kwargs = {}
    if p.get("weights_asset"):
        kwargs["vgg16_weights"] = materialize_config_assets(cfg)["perceptual.weights_asset"]
    return build_perceptual(p["backend"], device=device, **kwargs)


class ResizedPerceptual:
    """`resized_perceptual`'s distance. Besides the call, `features` and `between` split it in two, so that a
    caller scoring an image against several others (edit_fidelity) runs the trunk on each image once; they are
    the fast path's math (PerceptualDistance.distance_between) whatever `fast`."""

    def __init__(self, net, *, size: int, device: torch.device, fast: bool):
        self.net, self.size, self.device = net, size, device
        self._score = net.distance if fast else net

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        from fzplus.images import resize_bicubic

        return resize_bicubic(x.to(self.device), self.size)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._score(self._resized(x), self._resized(y))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's features of images [N, 3, H, W] at the configured size, without gradients."""
        return self.net.batched_features(self._resized(x))

    def between(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """Per-image distance [N] between two lists of `features`."""
        return self.net.distance_between(fx, fy)


def resized_perceptual(cfg: Mapping[str, Any], *, net=None, fast: bool = False) -> ResizedPerceptual:
    """(x, y) -> per-image perceptual distance [N], both images resized to the configured size (bicubic),
    as the inversion's loss computes it; on the configured device. net: an already built distance.
    fast: the no-grad fast path (PerceptualDistance.distance, 1.5x faster on CPU) for the editing metrics'
    thousands of pairs; Table 1 keeps the package's own forward, so its figures stay comparable across versions."""
    device = device_of(cfg)
    net = perceptual_distance(cfg, device=device) if net is None else net
    return ResizedPerceptual(net, size=cfg["perceptual"]["size"], device=device, fast=fast)


def ensure_parent(path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class _Tee:
    """A text stream that writes to a console stream and to a log file."""

    def __init__(self, console, log):
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.console.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def isatty(self) -> bool:  # progress bars redraw as on the console
        return self.console.isatty()

    @property
    def encoding(self) -> str:  # and draw with the console's characters (tqdm falls back to ASCII without one)
        return self.console.encoding or "utf-8"


@contextlib.contextmanager
def logged_output(path: str | os.PathLike | None) -> Iterator[None]:
    """Within: stdout and stderr also go to the log file `path` (a rule's `log:`), a stage's error too."""
    if path is None:
        yield
        return
    with open(ensure_parent(path), "w", encoding="utf-8") as log:
        out, err = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                yield
            except BaseException:
                log.write(traceback.format_exc())
                raise
