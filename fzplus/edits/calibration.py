"""The unit of alpha: what one unit of edit strength moves, in each domain, and how far it moves the images.

A finder's vectors say where to go; calibration says how far one unit of alpha goes, so that a Z-type
and a W-type space edited at the same alpha are edited equally hard (SPEC §7). The rule ("domain-std",
the default): one unit of alpha moves the code by the direction's native length, counted in standard
deviations of the domain's own code distribution.
- Z: z ~ N(0, I) has std 1 along every direction, so Z steps are the finders' vectors unchanged. This is
  the authors' convention for every family (GANSpace's `lat_stdev` is 1 in Z; edit_ganspace_zp.py steps
  by alpha * n_k; InterFaceGAN steps by alpha along its unit normal; edit_*_rand.py by alpha * n).
- W: a unit direction n is scaled by sqrt(n^T C n), C the covariance of mapped codes w = mapping(z).
  For GANSpace this is sqrt(lambda_k), the authors' edit_ganspace.py convention, exactly (the same
  samples as the GANSpace fit). A random draw n ~ N(0, sigma^2 I) becomes C^(1/2) n ~ N(0, sigma^2 C),
  the W counterpart of the Z draw; the authors apply N(0, sigma^2 I) in W directly, which puts most of the
  step where W has no spread (a generator's W can be ~160-dimensional of 512) and barely moves the
  image. InterFaceGAN's W normal is scaled like GANSpace's (the authors only edit Z with it).
The "authors" rule keeps the authors' W steps instead (GANSpace sqrt(lambda_k), the rest unscaled).

Whatever the rule, `calibrate_directions` measures how far one unit moves generated images: the mean
perceptual distance between G(code) and G(code +- one unit), edited on all layers, over seeded samples.
That figure goes in the diagnostics and tables/directions, so a reader can check that the domains were
edited comparably. Measured in the mini run (32 images, ST-LPIPS at 64 px, Z over W by family mean):
GANSpace 1.18, InterFaceGAN 1.90, random 1.35; with the W std applied in Z as before, GANSpace was ~5x.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fzplus.edits.directions import Directions
from fzplus.edits.directions.ganspace import sample_z_batches

UNIT_RULES = ("domain-std", "authors")


def w_covariance(
    mapping: Callable[[torch.Tensor], torch.Tensor],
    *,
    z_dim: int,
    num_samples: int,
    seed: int,
    batch_size: int = 10_000,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Covariance [D, D] (float64) of w = mapping(z) over `num_samples` seeded draws: with GANSpace's seed and
    count these are GANSpace's own samples, so its sqrt(lambda_k) is reproduced exactly."""
    n, total, outer = 0, 0.0, 0.0
    with torch.no_grad():
        for z in sample_z_batches(z_dim=z_dim, num_samples=num_samples, batch_size=batch_size, seed=seed):
            w = mapping(z.to(device)).cpu().double().numpy()
            n, total, outer = n + len(w), total + w.sum(0), outer + w.T @ w
    mean = total / n
    return (outer - n * np.outer(mean, mean)) / (n - 1)


def unit_steps(directions: Directions, *, rule: str = "domain-std", w_cov: np.ndarray | None = None) -> torch.Tensor:
    """[K, D] the code change per unit of alpha for each direction (module docstring)."""
    if rule not in UNIT_RULES:
        raise ValueError(f"unit rule must be one of {UNIT_RULES}, got {rule!r}")
    vectors = directions.vectors.double().numpy()  # [K, D]
    if directions.domain == "Z":
        return torch.from_numpy(vectors).float()
    if w_cov is None:
        raise ValueError("W-domain directions need the covariance of mapped codes (w_covariance) to set their unit")
    if rule == "authors" and directions.method != "ganspace":
        return torch.from_numpy(vectors).float()
    if directions.method == "random":
        with threadpool_limits(limits=1, user_api="blas"):  # see fzplus.edits.directions.ganspace
            values, basis = np.linalg.eigh((w_cov + w_cov.T) / 2)
        root = (basis * np.sqrt(np.clip(values, 0.0, None))) @ basis.T  # C^(1/2), symmetric
        return torch.from_numpy(vectors @ root).float()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    spread = np.sqrt(np.einsum("kd,de,ke->k", unit, w_cov, unit))  # std of w along each direction
    return torch.from_numpy(vectors * spread[:, None]).float()


@torch.no_grad()
def image_distance_per_unit(
    steps: torch.Tensor,
    *,
    domain: str,
    generator,
    distance: Callable,
    num_images: int = 32,
    seed: int = 0,
    batch_size: int = 32,
) -> np.ndarray:
    """[K] mean distance(G(code), G(code +- step_k)) over `num_images` seeded samples and both signs, the edit
    applied on every layer (Z: the moved z is retracted to the sphere, as the Z spaces edit)."""
    from spaces.base import retract_to_sphere

    G = generator
    device = G.w_avg.device
    z = torch.randn(num_images, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)

    def render(code: torch.Tensor) -> torch.Tensor:
        w = G.mapping(retract_to_sphere(code)) if domain == "Z" else code
        return G.synthesize(w[:, None].expand(-1, G.num_ws, -1)).clamp(-1, 1)

    out = np.zeros(len(steps))
    for part in z.split(batch_size):
        code = retract_to_sphere(part) if domain == "Z" else G.mapping(part)
        unedited = render(code)
        for k, step in enumerate(steps.to(device)):
            for sign in (1.0, -1.0):
                out[k] += float(distance(render(code + sign * step), unedited).sum())
    return out / (2 * num_images)


def calibrate_directions(
    directions: Directions,
    *,
    generator,
    distance: Callable,
    rule: str = "domain-std",
    covariance_samples: int = 100_000,
    covariance_batch_size: int = 10_000,
    seed: int = 0,
    num_images: int = 32,
    device: str | torch.device = "cpu",
) -> Directions:
    """The same directions with their vectors replaced by the steps of one unit of alpha (what the editing
    protocol applies), and diagnostics `unit_rule`, `direction_norm` (before), `step_norm` (after) and
    `image_distance_per_unit` (the measured move, in `distance`'s units)."""
    w_cov = None
    if directions.domain == "W":
        w_cov = w_covariance(
            generator.mapping,
            z_dim=generator.z_dim,
            num_samples=covariance_samples,
            seed=seed,
            batch_size=covariance_batch_size,
            device=device,
        )
    steps = unit_steps(directions, rule=rule, w_cov=w_cov)
    moved = image_distance_per_unit(
        steps, domain=directions.domain, generator=generator, distance=distance, num_images=num_images, seed=seed + 3
    )
    diagnostics = dict(
        directions.diagnostics,
        unit_rule=rule,
        direction_norm=directions.vectors.norm(dim=1).tolist(),
        step_norm=steps.norm(dim=1).tolist(),
        image_distance_per_unit=moved.tolist(),
        calibration=dict(covariance_samples=int(covariance_samples), seed=int(seed), images=int(num_images)),
    )
    return Directions(
        vectors=steps,
        domain=directions.domain,
        names=directions.names,
        method=directions.method,
        unit=False,
        diagnostics=diagnostics,
    )


def is_calibrated(directions: Directions) -> bool:
    return "unit_rule" in directions.diagnostics
