"""Where the faces sit: mean dlib landmark positions of a profile's generator samples and of its targets,
and the centred crop of the targets that puts their eyes and mouth where the generator draws them.

    python -m benchmarks.studies.face_layout [--profile mini] [--samples 300] [--threads N]

An inversion of the F spaces keeps the target's layout in the base code f while the detail layers draw
the generator's own eyes and mouth, so a target whose face is smaller than the generator's gets doubled
features. `targets.crop` of the profile takes the printed value. Positions are fractions of the image
side (x right, y down); faces are located by dlib's HOG detector on images upsampled to 256 px.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import fzplus  # noqa: F401
from fzplus.config import load_config, resolve_path
from fzplus.faces.landmarks import as_uint8_images, load_dlib_model, locate_face, upsample
from fzplus.generator import load_generator
from fzplus.planning import materialize_config_assets
from fzplus.targets import list_images, prepare_target

POINTS = {"left_eye": slice(36, 42), "right_eye": slice(42, 48), "mouth": slice(48, 68)}  # dlib's 68-point scheme


def mean_layout(images: list[np.ndarray], *, min_size: int = 256) -> tuple[np.ndarray, int]:
    """Mean (x, y) of each of POINTS over the images with a detected face: ([len(POINTS), 2], faces found)."""
    predictor = load_dlib_model("landmarks_68")
    found = []
    for image in images:
        big = upsample(image, min_size=min_size)
        box, detected = locate_face(big)
        if detected:
            marks = np.array([[p.x, p.y] for p in predictor(big, box).parts()], np.float64) / big.shape[0]
            found.append([marks[part].mean(0) for part in POINTS.values()])
    if not found:
        raise ValueError("no face detected in any image: cannot measure a layout")
    return np.mean(found, axis=0), len(found)


def centred_crop_fit(targets: np.ndarray, generated: np.ndarray) -> float:
    """The crop fraction c that best maps target points p onto generated points g by the centred crop
    q = 0.5 + (p - 0.5) / c (least squares in 1/c)."""
    a, b = targets - 0.5, generated - 0.5
    return float(np.sum(a * a) / np.sum(a * b))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="mini")
    p.add_argument("--samples", type=int, default=300, help="generator samples (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.profile)
    g, t = cfg["generator"], cfg["targets"]
    G = load_generator(
        resolve_path(g["checkpoint"]) if g["checkpoint"] else materialize_config_assets(cfg)["generator.asset"]
    )
    with torch.no_grad():
        z = torch.randn(args.samples, G.z_dim, generator=torch.Generator().manual_seed(args.seed))
        generated = torch.cat(
            [
                G.synthesize(G.map(part, truncation_psi=g["truncation_psi"], truncation_cutoff=g["truncation_cutoff"]))
                for part in z.split(50)
            ]
        ).clamp(-1, 1)
    folder = resolve_path(t["folder"]) if t["folder"] else materialize_config_assets(cfg)["targets.asset"]
    target_pixels = [prepare_target(path, resolution=G.resolution).pixels for path in list_images(folder)]  # uncropped

    gen_layout, gen_found = mean_layout(as_uint8_images(generated))
    target_layout, target_found = mean_layout(target_pixels)
    crop = centred_crop_fit(target_layout, gen_layout)
    cropped = 0.5 + (target_layout - 0.5) / crop
    report = dict(
        profile=args.profile,
        generator=dict(
            samples=args.samples, faces_found=gen_found, **{k: v.round(4).tolist() for k, v in zip(POINTS, gen_layout)}
        ),
        targets=dict(
            images=len(target_pixels),
            faces_found=target_found,
            **{k: v.round(4).tolist() for k, v in zip(POINTS, target_layout)},
        ),
        suggested_crop=round(crop, 3),
        targets_after_crop={k: v.round(4).tolist() for k, v in zip(POINTS, cropped)},
        configured_crop=t["crop"],
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
