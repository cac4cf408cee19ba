"""Quality figures of a mini generator (StyleGAN2 or StyleGAN1) against its teacher (models/mini/MODEL_CARD.md).

    python -m benchmarks.studies.mini_generator_quality --generator models/mini/generator.pt --out models/mini \\
        [--samples 1000]
    python -m benchmarks.studies.mini_generator_quality --generator models/mini-stylegan1/generator.pt \\
        --out models/mini-stylegan1

Prints and writes `quality.json` plus the model card's figures (`samples.png`: 64 fixed seeds;
`style_mixing.png`: coarse layers (those styling 4x4 and 8x8) from the row's code, the others from the
column's code):
- face detection rate: dlib's HOG detector on each sample upsampled to 256 px, student vs teacher
  (target: student >= 0.8x teacher);
- Frechet distance between dlib 128-d face embeddings of student and teacher samples, next to the
  distance between two independent teacher sample sets (the floor set by sampling noise);
- latent sensitivity: mean pixel change of G(z + eps u) for unit u in the 100-d subspace paired with the
  teacher during distillation vs in its 412-d complement. A ratio far above 1 means Z is effectively
  100-d and the sphere of radius sqrt(512) is mostly inert directions;
- wall time to load the checkpoint and generate 64 images (target: < 2 s).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

import fzplus  # noqa: F401  (torchvision compatibility before dlib/facenet imports)
from fzplus.generator import load_generator
from fzplus.generator.interface import StyleGenerator
from fzplus.io import atomic_write_text
from fzplus.training.mini_generator import save_grid
from fzplus.training.teacher import TeacherSampler

GRID_SEED = 12345  # the training run's sample-grid seed, so the card's grid matches the training log's grids
DETECTION_SIZE = 256


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a [N, D] and b [M, D]:
    |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product: regularise as pytorch-fid does
        eps = 1e-6 * np.eye(a.shape[1])
        root = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real))


def face_statistics(images: torch.Tensor, *, backend, min_size: int = DETECTION_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 3, R, R] in [-1, 1] -> (dlib embeddings [N, 128], detected [N] bool) at `min_size` px."""
    if backend.min_size != min_size:
        raise ValueError(f"the identity backend upsamples to {backend.min_size} px, expected {min_size}")
    return backend.embed(images.clamp(-1, 1))


@torch.no_grad()
def generate(sample_batch, count: int, *, batch: int = 100, desc: str) -> torch.Tensor:
    """Concatenate sample_batch(n) calls into [count, 3, R, R]."""
    chunks = []
    for start in tqdm(range(0, count, batch), desc=desc, leave=False):
        chunks.append(sample_batch(min(batch, count - start)))
    return torch.cat(chunks)


@torch.no_grad()
def latent_sensitivity(
    G: StyleGenerator, projection: torch.Tensor, *, samples: int = 200, eps: float = 0.5, seed: int = 0
) -> dict:
    """Mean |G(z + eps u) - G(z)| for random unit u inside the row space of `projection` [k, z_dim] vs orthogonal
    to it."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(projection.t())[0]  # [z_dim, k] orthonormal
    z = torch.randn(samples, G.z_dim, generator=g)
    inside = torch.randn(samples, basis.shape[1], generator=g) @ basis.t()
    outside = torch.randn(samples, G.z_dim, generator=g)
    outside = outside - (outside @ basis) @ basis.t()
    base = G(z)
    change = {}
    for name, u in (("paired_subspace", inside), ("complement", outside)):
        u = u / u.norm(dim=1, keepdim=True)
        change[name] = float((G(z + eps * u) - base).abs().mean())
    change["ratio"] = change["paired_subspace"] / max(change["complement"], 1e-12)
    change["eps"] = eps
    return change


@torch.no_grad()
def style_mixing_grid(
    G: StyleGenerator, row_z: torch.Tensor, col_z: torch.Tensor, *, coarse_layers: int
) -> torch.Tensor:
    """Grid images [(R+1) * (C+1), 3, S, S]: first row = column sources, first column = row sources, cell (r, c) =
    the first `coarse_layers` ws of row r with the remaining ws of column c. The corner is blank."""
    row_ws, col_ws = G.map(row_z), G.map(col_z)  # [R, num_ws, w], [C, num_ws, w]
    row_img, col_img = G.synthesize(row_ws), G.synthesize(col_ws)
    blank = torch.ones_like(row_img[:1])
    cells = [blank, col_img]
    for r in range(row_z.shape[0]):
        mixed = col_ws.clone()
        mixed[:, :coarse_layers] = row_ws[r, :coarse_layers]
        cells += [row_img[r : r + 1], G.synthesize(mixed)]
    return torch.cat(cells)


def load_and_generate_seconds(path: pathlib.Path, *, count: int = 64, repeats: int = 3) -> float:
    """Best of `repeats` wall times for load_generator + generating `count` images (first call warms caches)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        G = load_generator(path)
        with torch.no_grad():
            G(torch.randn(count, G.z_dim))
        times.append(time.perf_counter() - start)
    return min(times)


def measure(
    generator_path: pathlib.Path, out_dir: pathlib.Path, *, samples: int = 1000, seed: int = 0, teacher_seed: int = 0
) -> dict:
    from benchmarks.metrics.identity import make_identity_backend

    G = load_generator(generator_path)
    teacher = TeacherSampler(student_z_dim=G.z_dim, seed=teacher_seed, resolution=G.resolution)
    rngs = [torch.Generator().manual_seed(seed + i) for i in range(3)]
    student = generate(lambda n: G(torch.randn(n, G.z_dim, generator=rngs[0])), samples, desc="student samples")
    teacher_a = generate(lambda n: teacher.sample(n, generator=rngs[1]), samples, desc="teacher samples A")
    teacher_b = generate(lambda n: teacher.sample(n, generator=rngs[2]), samples, desc="teacher samples B")

    backend = make_identity_backend("dlib", on_undetected="full-frame", min_size=DETECTION_SIZE, progress=True)
    emb_s, det_s = face_statistics(student, backend=backend)
    emb_a, det_a = face_statistics(teacher_a, backend=backend)
    emb_b, _ = face_statistics(teacher_b, backend=backend)
    figures = dict(
        generator=str(generator_path),
        architecture=G.architecture,
        samples=samples,
        seed=seed,
        detection_rate_student=float(det_s.mean()),
        detection_rate_teacher=float(det_a.mean()),
        detection_ratio=float(det_s.mean() / max(det_a.mean(), 1e-12)),
        frechet_dlib_student_teacher=frechet_distance(emb_s, emb_a),
        frechet_dlib_teacher_teacher=frechet_distance(emb_b, emb_a),
        latent_sensitivity=latent_sensitivity(G, teacher.projection, seed=seed),
        load_and_generate_64_seconds=load_and_generate_seconds(generator_path),
        threads=torch.get_num_threads(),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        save_grid(
            G(torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(GRID_SEED))), out_dir / "samples.png"
        )
        g = torch.Generator().manual_seed(seed + 7)
        # Coarse: the ws before the detail code of the split at 16x16, those of the 4x4 and 8x8 layers; 4 in both
        # architectures at 64 px (StyleGAN2's ws[3] also styles 8x8's ToRGB and 16x16's first conv).
        coarse = G.first_detail_layer(16)
        grid = style_mixing_grid(
            G, torch.randn(5, G.z_dim, generator=g), torch.randn(7, G.z_dim, generator=g), coarse_layers=coarse
        )
        save_grid(grid, out_dir / "style_mixing.png", cols=8)
        save_grid(
            teacher.sample(64, generator=torch.Generator().manual_seed(GRID_SEED)), out_dir / "teacher_samples.png"
        )
    atomic_write_text(out_dir / "quality.json", json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", type=pathlib.Path, default=pathlib.Path("models/mini/generator.pt"))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("models/mini"))
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    figures = measure(args.generator, args.out, samples=args.samples, seed=args.seed)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
