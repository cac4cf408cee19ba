"""The unit of alpha: what one unit of edit strength moves, in each domain, and how far it moves the images.

A finder's vectors say where to go; calibration says how far one unit of alpha goes, so that a Z-type
and a W-type space edited at the same alpha are edited equally hard (SPEC §7). In Z every rule keeps the
finders' vectors: z ~ N(0, I) has std 1 along every direction, and these are the authors' steps for every
family (GANSpace's `lat_stdev` is 1 in Z; edit_ganspace_zp.py steps by alpha * n_k; InterFaceGAN steps by
alpha along its unit normal; edit_*_rand.py by alpha * n). The rules differ in W:
- "matched" (the default): each W direction k is scaled so that one unit moves generated images by the same
  measured amount as Z direction k of its family (paired by name: the same attribute for InterFaceGAN, the
  same component for GANSpace, the same draw for random), so the paper's alphas keep their Z meaning in both
  domains. The image move is nonlinear in the step, so the scale is solved for: starting from the
  "domain-std" step, a linear estimate, then secant steps on log(scale) vs log(move), kept inside a bracket
  by bisection, until the move is within `tolerance` (relative, default 5 %) of the Z move, both measured on
  one set of seeded samples (`MATCH_SEED_OFFSET`). A direction that stays short of its target at
  `max_scale` times its domain-std step (its image change saturates) or within `MATCH_MAX_ITERATIONS`
  measurements is an error naming the family and direction: carrying on would edit it barely at all, and a
  no-op edit scores the best edit fidelity. Diagnostics per direction: `matched_reference` (the Z move on
  the fitting samples), `matched_scale` (times the domain-std step), `matched_iterations` (measurements),
  `matched_fit_distance` (the W move there).
- "domain-std": one unit moves a code by the direction's native length in standard deviations of W
  along it. A unit direction n is scaled by sqrt(n^T C n), C the covariance of mapped codes w = mapping(z).
  For GANSpace this is sqrt(lambda_k), the authors' edit_ganspace.py convention, exactly (the same samples
  as the GANSpace fit). A random draw n ~ N(0, sigma^2 I) becomes C^(1/2) n ~ N(0, sigma^2 C), the W
  counterpart of the Z draw; the authors apply N(0, sigma^2 I) in W directly, which puts most of the step
  where W has no spread (a generator's W can be ~160-dimensional of 512) and barely moves the image.
  InterFaceGAN's W normal is scaled like GANSpace's (the authors only edit Z with it).
- "authors": the authors' W steps (GANSpace sqrt(lambda_k), the rest unscaled). With it the editing
  protocol is the paper's exactly.

Whatever the rule, `calibrate_directions` measures how far one unit moves generated images: the mean
perceptual distance between G(code) and G(code +- one unit), edited on all layers, over seeded samples
held out from the matching (`HELD_OUT_SEED_OFFSET`). That figure, `image_distance_per_unit`, goes in the
diagnostics and tables/directions (and, Z beside W per direction, tables/edit_strength), so a reader can
check that the domains were edited comparably. Measured in the mini run (32 images, ST-LPIPS at 64 px), Z over
W per direction: with "domain-std" 0.98-2.4 for seven directions but 19 (InterFaceGAN smile) and 107
(mouth_open); with "matched" 0.80-1.35 for all nine (W scales 0.83-12.4, 2-5 measurements each). The held-out
ratios stray from 1 by sampling alone: image by image a W edit moves 0.4-2.5x (10th-90th percentile) what its
Z namesake does, so a mean over 32 images is good to about +-20 %; `images` sets both samples' size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fzplus.edits.directions import Directions
from fzplus.edits.directions.ganspace import sample_z_batches

STEP_RULES = ("domain-std", "authors")  # closed-form W steps (unit_steps)
UNIT_RULES = ("matched", *STEP_RULES)  # "matched" rescales the domain-std W steps (module docstring)
MATCH_TOLERANCE = 0.05  # relative difference between the W and the Z image move on the fitting samples
MATCH_MAX_SCALE = 100.0  # times the domain-std step: 100 stds of W along the direction is far outside W
MATCH_MAX_ITERATIONS = 12  # image-move measurements per direction; the secant needs 3-5 on the mini generator
MATCH_SEED_OFFSET = 4  # the fitting samples: seed + 4 (seed + 1 labels InterFaceGAN's, seed is GANSpace's)
HELD_OUT_SEED_OFFSET = 3  # the reported image_distance_per_unit: other samples than the fit's


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
    """[K, D] the code change per unit of alpha for each direction under a closed-form rule (module docstring);
    "matched" steps are solved for by calibrate_directions, starting from the "domain-std" ones."""
    if rule not in STEP_RULES:
        raise ValueError(f"unit_steps takes a rule of {STEP_RULES}, got {rule!r} (matched: calibrate_directions)")
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


def _distance_to(reference: torch.Tensor, *, distance: Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> distance(x, reference) [N]; through `distance.prepare` where it has one (features computed once)."""
    if hasattr(distance, "prepare"):
        return distance.prepare(reference)
    return lambda x: distance(x, reference)


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
    applied on every layer (Z: the moved z is retracted to the sphere, as the Z spaces edit). A distance with
    `prepare(y) -> (x -> [N])` (fzplus.perceptual.PerceptualDistance) scores the unedited images' features once
    per batch instead of once per edit, which halves the perceptual net's work."""
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
        to_unedited = _distance_to(unedited, distance=distance)
        for k, step in enumerate(steps.to(device)):
            for sign in (1.0, -1.0):
                out[k] += float(to_unedited(render(code + sign * step)).sum())
    return out / (2 * num_images)


def family_of(directions: Directions) -> str:
    """The direction family: released InterFaceGAN boundaries belong to "interfacegan"."""
    return directions.method.removesuffix("-released")


def _next_log_scale(history: list[tuple[float, float]], *, log_cap: float) -> float | None:
    """The next log(scale) to measure, from the measured (log scale, log(move / target)) pairs; None when the
    target is out of reach (the cap was measured and is still short of it, with nothing above it)."""
    if not history:
        return 0.0  # the domain-std step
    x, y = (np.array(v) for v in zip(*history))
    if len(history) == 1:
        proposal = x[0] - y[0]  # the linear estimate: a move proportional to the scale (inf after a zero move)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
            proposal = x[-1] - y[-1] / slope if slope > 0 and np.isfinite(slope) else np.nan
    short, beyond = x[y < 0], x[y > 0]
    if len(short) and len(beyond):  # a bracket: the move crosses the target between these two scales
        low, high = sorted((short.max(), beyond.min()))
        if not low < proposal < high:
            proposal = (low + high) / 2
    elif len(short):  # every scale so far is short of the target: grow, up to the cap
        if x.max() >= log_cap:
            return None
        if not proposal > x.max():
            proposal = log_cap
    elif not proposal < x.min():  # every scale overshoots: shrink (the move vanishes with the step)
        proposal = x.min() - math.log(4.0)
    return float(min(proposal, log_cap))


def match_scales(
    measure: Callable[[np.ndarray, np.ndarray], np.ndarray],
    targets: np.ndarray,
    *,
    tolerance: float = MATCH_TOLERANCE,
    max_scale: float = MATCH_MAX_SCALE,
    max_iterations: int = MATCH_MAX_ITERATIONS,
) -> dict[str, np.ndarray]:
    """Per direction k a scale whose measured move is within `tolerance` (relative) of targets[k].

    measure(rows, scales) -> the moves [len(rows)] of directions `rows` at `scales`: the directions still
    searching are measured together, one pass over the samples per iteration. Returns arrays [K]: scale,
    move (measured there), iterations (measurements) and matched; an unmatched direction reports the measured
    scale closest to its target."""
    targets = np.asarray(targets, dtype=np.float64)
    if not (np.isfinite(targets) & (targets > 0)).all():
        raise ValueError(f"match_scales: targets must be positive image moves, got {targets.tolist()}")
    log_cap = math.log(max_scale)
    history: list[list[tuple[float, float]]] = [[] for _ in targets]
    searching = np.ones(len(targets), bool)
    for _ in range(max_iterations):
        proposals = {int(k): _next_log_scale(history[k], log_cap=log_cap) for k in np.flatnonzero(searching)}
        for k in [k for k, proposal in proposals.items() if proposal is None]:
            searching[k] = False  # saturated below the target
            del proposals[k]
        if not proposals:
            break
        rows = np.array(list(proposals))
        moves = np.asarray(measure(rows, np.exp(list(proposals.values()))), dtype=np.float64)
        if not (np.isfinite(moves) & (moves >= 0)).all():
            raise ValueError(f"match_scales: the measured image moves must be finite and >= 0, got {moves.tolist()}")
        with np.errstate(divide="ignore"):
            errors = np.log(moves / targets[rows])
        for k, log_scale, error in zip(rows, proposals.values(), errors):
            history[k].append((log_scale, float(error)))
            searching[k] = abs(math.expm1(error)) > tolerance
    best = [min(h, key=lambda point: abs(point[1])) for h in history]
    return dict(
        scale=np.exp([x for x, _ in best]),
        move=targets * np.exp([y for _, y in best]),
        iterations=np.array([len(h) for h in history]),
        matched=np.array([abs(math.expm1(y)) <= tolerance for _, y in best]),
    )


def matched_steps(
    directions: Directions,
    start: torch.Tensor,
    *,
    reference: Directions | None,
    measure: Callable[..., np.ndarray],
    tolerance: float = MATCH_TOLERANCE,
    max_scale: float = MATCH_MAX_SCALE,
) -> tuple[torch.Tensor, dict]:
    """W steps [K, D] rescaled from `start` (the domain-std steps) so that each moves images as far as the Z
    direction of the same name in `reference`, and their diagnostics. measure(steps, domain=) -> [K] moves
    on the fitting samples. A direction that cannot be matched is an error naming it (module docstring)."""
    family = family_of(directions)
    if reference is None or reference.domain != "Z" or family_of(reference) != family:
        got = "nothing" if reference is None else f"{family_of(reference)} directions in {reference.domain}"
        raise ValueError(f"the matched unit needs the Z {family} directions as the reference for W, got {got}")
    unpaired = [name for name in directions.names if name not in reference.names]
    if unpaired:
        raise ValueError(
            f"matched unit: the W {family} directions {unpaired} have no Z direction of the same name (Z has "
            f"{list(reference.names)}); fit both domains for the same attributes, components or draws"
        )
    targets = measure(torch.stack([reference[name] for name in directions.names]), domain="Z")
    found = match_scales(
        lambda rows, scales: measure(
            start[torch.as_tensor(rows)] * torch.from_numpy(scales).float()[:, None], domain="W"
        ),
        targets,
        tolerance=tolerance,
        max_scale=max_scale,
    )
    failures = [
        f"{name!r}: {move:.3g} per unit at {scale:.3g} x its domain-std step against {target:.3g} in Z"
        + (" (its image change saturates below the Z move)" if scale >= max_scale * (1 - 1e-9) else "")
        for name, move, scale, target, matched in zip(
            directions.names, found["move"], found["scale"], targets, found["matched"]
        )
        if not matched
    ]
    if failures:
        raise ValueError(
            f"matched unit: W {family} directions move the images unlike their Z counterparts beyond the "
            f"{tolerance:.0%} tolerance, within a scale cap of {max_scale:g} and {MATCH_MAX_ITERATIONS} "
            f"measurements: {'; '.join(failures)}. Drop the direction, raise directions.unit.max_scale, or "
            "choose directions.unit.rule: domain-std"
        )
    diagnostics = dict(
        matched_reference=targets.tolist(),
        matched_scale=found["scale"].tolist(),
        matched_iterations=found["iterations"].tolist(),
        matched_fit_distance=found["move"].tolist(),
        matching=dict(tolerance=float(tolerance), max_scale=float(max_scale), reference_method=reference.method),
    )
    return start * torch.from_numpy(found["scale"]).float()[:, None], diagnostics


def calibrate_directions(
    directions: Directions,
    *,
    generator,
    distance: Callable,
    rule: str = "domain-std",
    reference: Directions | None = None,
    covariance_samples: int = 100_000,
    covariance_batch_size: int = 10_000,
    seed: int = 0,
    num_images: int = 32,
    tolerance: float = MATCH_TOLERANCE,
    max_scale: float = MATCH_MAX_SCALE,
    device: str | torch.device = "cpu",
) -> Directions:
    """The same directions with their vectors replaced by the steps of one unit of alpha (what the editing
    protocol applies), and diagnostics `unit_rule`, `direction_norm` (before), `step_norm` (after) and
    `image_distance_per_unit` (the measured move on held-out samples, in `distance`'s units); "matched" W
    directions also carry the matching's (module docstring). reference: the same family's Z directions, which
    "matched" W directions are matched to (the pipeline's default rule; this function's, "domain-std", needs none)."""
    if rule not in UNIT_RULES:
        raise ValueError(f"unit rule must be one of {UNIT_RULES}, got {rule!r}")
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
    steps = unit_steps(directions, rule="domain-std" if rule == "matched" else rule, w_cov=w_cov)
    measure = functools.partial(image_distance_per_unit, generator=generator, distance=distance, num_images=num_images)
    matching = {}
    if rule == "matched" and directions.domain == "W":
        steps, matching = matched_steps(
            directions,
            steps,
            reference=reference,
            measure=functools.partial(measure, seed=seed + MATCH_SEED_OFFSET),
            tolerance=tolerance,
            max_scale=max_scale,
        )
    moved = measure(steps, domain=directions.domain, seed=seed + HELD_OUT_SEED_OFFSET)
    diagnostics = dict(
        directions.diagnostics,
        unit_rule=rule,
        direction_norm=directions.vectors.norm(dim=1).tolist(),
        step_norm=steps.norm(dim=1).tolist(),
        image_distance_per_unit=moved.tolist(),
        calibration=dict(covariance_samples=int(covariance_samples), seed=int(seed), images=int(num_images)),
        **matching,
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
