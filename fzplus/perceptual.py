"""Perceptual distances for the inversion loss (paper Eq. 1, L_per) and for reconstruction metrics.

A `PerceptualDistance` takes two image batches [N, 3, H, W] in [-1, 1] and returns one differentiable
distance per image [N]. Its parameters are frozen and it stays in eval mode (dropout off).

Backends (registry `BACKENDS`, `build_perceptual(name, ...)`):
- "lpips-vgg": LPIPS v0.1 with the VGG16 trunk (PyPI `lpips`), as the authors. Its linear heads ship in
  the wheel, but the VGG16 trunk is torchvision's ImageNet checkpoint `vgg16-397923af.pth`, which
  torchvision downloads. Offline, give a local copy: `build_perceptual("lpips-vgg", vgg16_weights=PATH)`
  or place it in torch's hub cache (`<torch.hub.get_dir()>/checkpoints/`).
- "stlpips-vgg": shift-tolerant LPIPS, VGG trunk (PyPI `stlpips-pytorch`); every weight ships in the
  wheel, so it works offline (the `mini` profile's metric).

Fast paths: the target's features are computed once per inversion (`prepare(target)`); the reference
path calls the package's own forward on both images every time. Switch: `cache_target_features`. The
trunk runs on channels-last inputs, which oneDNN convolves faster on CPU (VGG fwd+bwd of 16 images at 64 px,
one thread, side by side: 1.69 vs 2.46 s); the same math up to summation order. Switch: `channels_last`.
`precision="bfloat16"` (an argument of `features` and `distance_to_features`, for the inversion loss only; the
metrics always run in float32) runs the trunk under bfloat16 autocast and normalises its features in float32:
ST-LPIPS forward and backward of 16 images at 64 px, one thread, side by side: 0.77 vs 1.36 s on a CPU with AMX,
distances within 0.9 % and input gradients at cosine 0.988 of float32's. Switch: precision="float32".
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import types
import urllib.error
import warnings
from collections.abc import Callable

import torch
from torch import nn

import fzplus  # noqa: F401  (the torchvision fallback must be installed before lpips imports torchvision)

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
# stlpips-pytorch imports IPython.embed, torchsummary.summary and torchvision.models at module level, but the
# shift-tolerant VGG uses none of them (its trunk is the package's own models_lpf): inert stand-ins let it
# import where they are absent, and spare a job torchvision's import (~3 s, most of it torch._dynamo).
_STLPIPS_UNUSED_IMPORTS = {"IPython": "embed", "torchsummary": "summary", "torchvision": "models"}


# the trunk's precision in the inversion loss: float32 (the reference) or bfloat16 autocast (module docstring)
PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"perceptual precision must be one of {PRECISIONS}, got {precision!r}")


class PerceptualWeightsUnavailable(RuntimeError):
    """A perceptual backend's weights are missing and cannot be downloaded."""


class PerceptualDistance(nn.Module):
    """LPIPS-style distance: per-layer unit-normalised features, squared differences, learned 1x1 heads,
    spatial mean, summed over layers. Subclasses provide the trunk (`model`, a package LPIPS module)."""

    name = ""

    def __init__(self, model: nn.Module, normalize: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self._normalize = normalize
        self.cache_target_features = True
        self.channels_last = True
        self.eval()

    def train(self, mode: bool = True) -> PerceptualDistance:
        # Frozen metric: stays in eval mode whatever the parent module does.
        return super().train(False)

    def features(self, x: torch.Tensor, *, precision: str = "float32") -> list[torch.Tensor]:
        """Unit-normalised trunk features of images [N, 3, H, W] in [-1, 1], in float32 whatever the trunk's
        `precision` (PRECISIONS; module docstring)."""
        check_precision(precision)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if precision == "float32":
            return [self._normalize(f) for f in self.model.net(self.model.scaling_layer(x))]
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            raw = self.model.net(self.model.scaling_layer(x))
        return [self._normalize(f.float()) for f in raw]

    def batched_features(self, x: torch.Tensor, *, batch_size: int = 16) -> list[torch.Tensor]:
        """`features` of many images without gradients, `batch_size` at a time (as `distance`), so that a caller
        scoring one image against several runs the trunk on it once. x [N, 3, H, W] -> per layer [N, C, h, w]."""
        with torch.no_grad():
            chunks = [self.features(x[k : k + batch_size]) for k in range(0, x.shape[0], batch_size)]
        return [torch.cat(layer) for layer in zip(*chunks)]

    def distance_between(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """Per-image distance [N] between two images' `features`, however they were computed."""
        total = 0
        for lin, x, y in zip(self.model.lins, fx, fy, strict=True):
            total = total + lin((x - y).square()).mean(dim=[2, 3])
        return total.reshape(fx[0].shape[0])

    def distance_to_features(
        self, x: torch.Tensor, target_features: list[torch.Tensor], *, precision: str = "float32"
    ) -> torch.Tensor:
        return self.distance_between(self.features(x, precision=precision), target_features)

    def distance_map(self, x: torch.Tensor, target_features: list[torch.Tensor]) -> torch.Tensor:
        """Where the distance comes from: each layer's head output [N, 1, h, w] upsampled (bilinear) to the
        input's size and summed over layers, as LPIPS's spatial=True. x [N, 3, H, W] -> [N, H, W]; its
        spatial mean is about `distance_to_features` (equal up to the upsampling's edge weights)."""
        total = 0
        for lin, fx, fy in zip(self.model.lins, self.features(x), target_features):
            layer = lin((fx - fy).square())
            total = total + torch.nn.functional.interpolate(
                layer, size=x.shape[-2:], mode="bilinear", align_corners=False
            )
        return total[:, 0]

    def distance(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
        """Fast path of `forward` for scoring without gradients: both images through the channels-last trunk
        (`features`), `batch_size` pairs at a time (16 ran 15 % faster than 64 here). Same math as forward
        up to summation order (tested). x, y [N, 3, H, W] in [-1, 1] -> [N]."""
        assert x.shape == y.shape and x.ndim == 4 and x.shape[1] == 3, (
            f"images must both be [N, 3, H, W], got {tuple(x.shape)} and {tuple(y.shape)}"
        )
        with torch.no_grad():
            return torch.cat(
                [
                    self.distance_to_features(x[k : k + batch_size], self.features(y[k : k + batch_size]))
                    for k in range(0, x.shape[0], batch_size)
                ]
            )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Reference path: the package's own forward. x, y [N, 3, H, W] in [-1, 1] -> [N]."""
        assert x.shape == y.shape and x.ndim == 4 and x.shape[1] == 3, (
            f"images must both be [N, 3, H, W], got {tuple(x.shape)} and {tuple(y.shape)}"
        )
        return self.model(x, y).reshape(x.shape[0])

    def prepare(self, target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """distance-to-target function for a fixed target [N, 3, H, W]; caches its features on the fast path."""
        target = target.detach()
        if not self.cache_target_features:
            return lambda x: self(x, target)
        with torch.no_grad():
            cached = self.features(target)
        return lambda x: self.distance_to_features(x, cached)


class LpipsVGG(PerceptualDistance):
    name = "lpips-vgg"

    def __init__(self, *, vgg16_weights: str | os.PathLike | None = None):
        import lpips

        path = (
            pathlib.Path(vgg16_weights)
            if vgg16_weights is not None
            else pathlib.Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
        )
        if vgg16_weights is not None and not path.is_file():
            raise FileNotFoundError(
                f"lpips-vgg: vgg16_weights={str(path)!r} does not exist; "
                f"it must be torchvision's {VGG16_FILE} ({VGG16_URL})"
            )
        if not path.is_file():
            self._download(path)
        # pnet_rand builds the VGG trunk without asking torchvision for weights; the heads load from the wheel.
        with warnings.catch_warnings():  # lpips 0.1.4 calls torchvision's deprecated `pretrained=` argument
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
        load_vgg16_features(model.net, path)
        super().__init__(model, lpips.normalize_tensor)

    @staticmethod
    def _download(path: pathlib.Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(VGG16_URL, str(path), progress=False)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise PerceptualWeightsUnavailable(
                f"lpips-vgg needs torchvision's ImageNet VGG16 weights ({VGG16_FILE}) and could not download them "
                f"from {VGG16_URL} ({exc}). Copy that file here from a machine with network and pass its path: "
                f"build_perceptual('lpips-vgg', vgg16_weights='/path/to/{VGG16_FILE}') "
                "(config key perceptual.vgg16_weights), "
                f"or put it at {path}. Offline alternative: 'stlpips-vgg'."
            ) from exc


def load_vgg16_features(trunk: nn.Module, path: pathlib.Path) -> None:
    """Load torchvision vgg16 `features.<i>.*` tensors into lpips' sliced trunk (`slice<k>.<i>.*`)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for name, _ in trunk.named_parameters():
        index_and_leaf = name.split(".", 1)[1]  # 'slice1.0.weight' -> '0.weight'
        key = f"features.{index_and_leaf}"
        if key not in state:
            raise ValueError(f"{path}: no tensor {key!r}; is this torchvision's {VGG16_FILE}?")
        mapped[name] = state[key]
    trunk.load_state_dict(mapped, strict=True)


class StLpipsVGG(PerceptualDistance):
    name = "stlpips-vgg"

    def __init__(self, *, skip_random_init: bool = True):
        """skip_random_init: build the package's model without drawing its random initial weights, which the
        weights file then overwrites (checked below): 2.6 of the 2.7 s a build took, mostly VGG16's unused
        classifier, paid by every pipeline job that scores images. False: the package's own construction."""
        with _stand_ins(_STLPIPS_UNUSED_IMPORTS):
            from stlpips_pytorch import stlpips, utils

        with _random_init_skipped(skip_random_init):
            model = stlpips.LPIPS(net="vgg", variant="shift_tolerant", verbose=False)
        weights = torch.load(
            pathlib.Path(stlpips.__file__).parent / "weights" / "vST0.0" / "vgg_shift_tolerant.pth",
            map_location="cpu",
            weights_only=True,
        )
        # The package loads with strict=False; make sure every tensor of the metric came from the file
        # (`lins.<k>` is the package's list of the modules `lin<k>`, which the file holds).
        unloaded = [k for k in model.state_dict() if k not in weights and k.replace("lins.", "lin", 1) not in weights]
        if unloaded:
            raise PerceptualWeightsUnavailable(
                f"stlpips-vgg: the weights shipped with stlpips-pytorch lack {unloaded[:4]}; "
                "reinstall stlpips-pytorch==0.0.2"
            )
        super().__init__(model, utils.normalize_tensor)


# The torch.nn.init functions that module constructors (Conv2d, Linear, torchvision's VGG) draw from.
_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "zeros_",
    "ones_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
)


@contextlib.contextmanager
def _random_init_skipped(enabled: bool):
    """While active, torch.nn.init leaves tensors as allocated (uninitialised): only for models whose every
    tensor is loaded from a file afterwards."""
    if not enabled:
        yield
        return
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
    for name in _INIT_FUNCTIONS:
        setattr(torch.nn.init, name, lambda tensor, *_args, **_kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


class _UnusedByTheMetric:
    """What a stand-in module holds: fails on any use, naming the stand-in."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *_args, **_kwargs):
        raise RuntimeError(
            f"{self._name} is a stand-in installed by fzplus.perceptual for an import stlpips-pytorch does not use"
        )

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):  # protocol probes (hasattr(x, "__wrapped__"), copy, pickle) see a plain object
            raise AttributeError(attribute)
        self(attribute)


@contextlib.contextmanager
def _stand_ins(imports: dict[str, str]):
    """Inert modules for the packages not yet imported, only while the importer runs: left in sys.modules, a
    fake `IPython` breaks libraries that probe for it (matplotlib reads IPython.version_info), and a fake
    torchvision would hide the real one from later imports."""
    added = []
    for module_name, attribute in imports.items():
        if module_name not in sys.modules:
            stand_in = types.ModuleType(module_name)
            setattr(stand_in, attribute, _UnusedByTheMetric(f"{module_name}.{attribute}"))
            sys.modules[module_name] = stand_in
            added.append(module_name)
    try:
        yield
    finally:
        for module_name in added:
            sys.modules.pop(module_name, None)


BACKENDS: dict[str, Callable[..., PerceptualDistance]] = {}


def register_perceptual(name: str, factory: Callable[..., PerceptualDistance]) -> None:
    if name in BACKENDS:
        raise ValueError(f"perceptual backend {name!r} is already registered")
    BACKENDS[name] = factory


def build_perceptual(name: str, *, device: torch.device | str = "cpu", **kwargs) -> PerceptualDistance:
    """A frozen perceptual distance by name ('lpips-vgg', 'stlpips-vgg'); kwargs go to the backend."""
    if name not in BACKENDS:
        raise KeyError(f"unknown perceptual backend {name!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[name](**kwargs).to(device)


register_perceptual(LpipsVGG.name, LpipsVGG)
register_perceptual(StLpipsVGG.name, StLpipsVGG)
