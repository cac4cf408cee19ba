"""The torchvision compatibility step: lpips and facenet-pytorch import and run on this machine."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fzplus.compat import install_torchvision_fallbacks, nms_reference


def test_fallback_is_installed_or_native():
    assert install_torchvision_fallbacks() in ("native", "fallback")


def test_import_lpips_and_torchvision_nms_work():
    import lpips  # noqa: F401
    from torchvision.ops import batched_nms, nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (best) suppresses boxes 0 and 1 (IoU 0.9 and 0.75); box 2 does not overlap
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    # in separate classes nothing suppresses box 1
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0]), 0.5).tolist() == [3, 1, 2]


def test_reference_nms_matches_a_brute_force_greedy_suppression():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 20], dim=1)
    scores = torch.rand(60, generator=g)

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    kept = []
    for i in sorted(range(60), key=lambda i: -scores[i].item()):
        if all(iou(boxes[i].tolist(), boxes[k].tolist()) <= 0.3 for k in kept):
            kept.append(i)
    assert nms_reference(boxes, scores, 0.3).tolist() == kept


def test_mtcnn_finds_the_astronauts_face():
    from facenet_pytorch import MTCNN
    from skimage.data import astronaut

    boxes, probs = MTCNN(device="cpu").detect(astronaut())
    assert boxes is not None and len(boxes) == 1 and probs[0] > 0.99
    x1, y1, x2, y2 = boxes[0]
    assert 150 < (x1 + x2) / 2 < 300 and 50 < (y1 + y2) / 2 < 200  # her face, upper middle of the 512x512 image


def test_fallback_must_run_before_torchvision_is_imported():
    code = "import torchvision"
    direct = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    via_fzplus = subprocess.run([sys.executable, "-c", "import fzplus; " + code], capture_output=True, text=True)
    assert via_fzplus.returncode == 0, via_fzplus.stderr[-2000:]
    if direct.returncode == 0:
        pytest.skip("torchvision's compiled ops load here: the fallback is a no-op on this machine")
    assert "torchvision::nms" in direct.stderr


def test_torchvision_is_imported_only_when_used_and_then_works():
    # fzplus and the stlpips-vgg metric leave torchvision unimported (its import costs a job ~3 s); the fallback
    # still takes effect when something imports torchvision afterwards
    code = (
        "import sys, torch, fzplus\n"
        "from fzplus.perceptual import build_perceptual\n"
        "build_perceptual('stlpips-vgg')\n"
        "assert 'torchvision' not in sys.modules, 'torchvision imported'\n"
        "from torchvision.ops import nms\n"
        "print(nms(torch.tensor([[0, 0, 10, 10.0], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8]), 0.5).tolist())"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "[0]"
