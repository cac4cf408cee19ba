"""Make torchvision importable on a CPU-only torch whose torchvision wheel carries CUDA-linked ops.

torchvision's compiled extension fails to load against the local CPU build of torch; its import then dies
with "operator torchvision::nms does not exist", and lpips and facenet-pytorch import torchvision.
`install_torchvision_fallbacks()` must run before the first `import torchvision` (importing `fzplus`
runs it). Where the compiled ops load it changes nothing. Otherwise it defines `torchvision::nms` (and
the quantised `qnms`) with a pure-PyTorch greedy NMS that follows torchvision's CPU kernel, and tells
torchvision that ops are present as soon as it is first imported (it does not import torchvision itself).
Only NMS is provided: the suite needs it for MTCNN face detection; other compiled ops
(roi_align, deform_conv2d, ...) stay unavailable and fail when called.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import pathlib
import sys

import torch

_LIBRARY: torch.library.Library | None = None  # must outlive the registration
_STATUS: str | None = None


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; boxes [K, 4] as (x1, y1, x2, y2). Returns kept indices, best first."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = scores.argsort(descending=True)
    b = boxes[order].to(torch.float64)
    x1, y1, x2, y2 = b.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    inter_w = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp(min=0)
    inter_h = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None])).clamp(min=0)
    inter = inter_w * inter_h
    overlaps = (inter / (areas[:, None] + areas[None] - inter) > iou_threshold).cpu().numpy()
    suppressed = overlaps[0] & False
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def _qnms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return nms_reference(boxes.dequantize(), scores.dequantize(), iou_threshold)


def _compiled_ops_load() -> bool | None:
    """True if torchvision's compiled ops load, False if not, None if torchvision is not installed."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    for lib in sorted(pathlib.Path(spec.origin).parent.glob("_C*.so")) + sorted(
        pathlib.Path(spec.origin).parent.glob("_C*.pyd")
    ):
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError, ImportError):
            return False
    return False


def install_torchvision_fallbacks() -> str:
    """Idempotent. Returns 'native', 'fallback', 'absent' (no torchvision) or 'imported-before' (too late to act)."""
    global _LIBRARY, _STATUS
    if _STATUS is not None:
        return _STATUS
    if "torchvision" in sys.modules:
        _STATUS = "imported-before"
        return _STATUS
    loaded = _compiled_ops_load()
    if loaded is None or loaded:
        _STATUS = "absent" if loaded is None else "native"
        return _STATUS
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.impl("nms", nms_reference, "CompositeExplicitAutograd")
    _LIBRARY.impl("qnms", _qnms, "CompositeExplicitAutograd")
    # Importing torchvision costs ~3 s (it imports torch._dynamo), which most jobs never need: the patch
    # waits for the first import of torchvision, and follows it as it followed an eager import (torchvision
    # registers its other ops' kernels during its import only when it finds its compiled ops).
    sys.meta_path.insert(0, _AfterImport("torchvision", _report_ops_present))
    _STATUS = "fallback"
    return _STATUS


def _report_ops_present(torchvision) -> None:
    torchvision.extension._has_ops = lambda: True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `patch(module)` right after module `name` is first executed, wherever it is imported from."""

    def __init__(self, name: str, patch) -> None:
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # one shot; the regular finders locate the module
        spec = importlib.util.find_spec(fullname)
        execute, patch = spec.loader.exec_module, self.patch

        def exec_module(module) -> None:
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec
