"""P_N statistics (Zhu et al., "Improved StyleGAN embedding"; used by BDInvert): whitening of W.

P is W with the mapping network's last activation undone; P_N is P whitened by a PCA of sampled codes:
    p   = deactivate_w(w)
    p_N = (p - mu) V / sqrt(lambda)
so that p_N of sampled codes has zero mean and identity covariance. The W+(P_N) spaces regularise
mean(p_N^2). The statistics are an artefact computed once per generator (paper: 1e6 samples; the count
is configurable) and saved as .npz.

The activation. Our mapping's last layer outputs w = sqrt(2) * lrelu_0.2(a) (`bias_act`, with the
equalised-lr gain sqrt(2)), so its exact inverse is a = lrelu_5(w / sqrt(2)) = lrelu_5(w) / sqrt(2).
BDInvert uses lrelu_5(w) on a generator without that gain in the activation; the constant factor does
not change p_N (whitening divides it out), so both give the same regulariser.

Well-posedness (SPEC §4). BDInvert whitens every component, which is harmless for FFHQ's mapping but not
for a generator whose W is effectively low-dimensional: the mini generator's covariance of p has
eigenvalues 88.8 .. 2.2e-9 (355 of 512 below 1e-3 of the largest), so dividing by their square roots
makes any step off the sampled subspace cost ~1e9 per unit. Two choices make the regulariser O(1):
- variance floor: eigenvalues below `variance_floor` x the largest are raised to that floor before
  whitening (not dropped: moving along those axes is still penalised, at a bounded rate). A generator
  whose spectrum lies above the floor whitens exactly as BDInvert does. Default 1e-3 (VARIANCE_FLOOR).
- start point: the P_N spaces start at `start_w`, the code whose p is the mean of P (p_N = 0: Zhu et al.
  start at the mean of P_N), not at w_avg, whose p is off the mean by the nonlinearity (on the mini
  generator w_avg whitens to mean(p_N^2) = 26,566 without the floor).
`summary()` gives the spectrum and these choices; the stage stores it in the artefact and provenance.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fzplus.generator.ops import LRELU_GAIN, LRELU_SLOPE
from fzplus.io import atomic_write

NPZ_KEYS = ("mean", "eigenvalues", "eigenvectors", "num_samples", "seed", "mapping_sha256", "variance_floor")
VARIANCE_FLOOR = 1e-3  # relative to the largest eigenvalue; see the module docstring


def deactivate_w(w: torch.Tensor) -> torch.Tensor:
    """Exact inverse of the mapping's last activation: w [..., D] -> pre-activation p [..., D]."""
    return F.leaky_relu(w / LRELU_GAIN, negative_slope=1.0 / LRELU_SLOPE)


def activate_p(p: torch.Tensor) -> torch.Tensor:
    """The mapping's last activation, the inverse of `deactivate_w`: p [..., D] -> w [..., D]."""
    return LRELU_GAIN * F.leaky_relu(p, negative_slope=LRELU_SLOPE)


def mapping_fingerprint(generator) -> str:
    """sha256 of the mapping network's parameters: ties saved statistics to the generator they describe."""
    h = hashlib.sha256()
    for name, tensor in sorted(generator.mapping.state_dict().items()):
        if name == "w_avg":
            continue
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class PNStats:
    """mean [D], eigenvalues [D] (descending), eigenvectors [D, D] (columns) of p = deactivate_w(w), and the
    relative variance floor applied when whitening (module docstring; 0 whitens every component as BDInvert).

    Kept in float64: the smallest eigenvalues of a mapping network's p can be 1e-8 of the largest.
    `whiten` computes in the dtype of its input."""

    mean: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    num_samples: int
    seed: int
    mapping_sha256: str = ""
    variance_floor: float = VARIANCE_FLOOR

    def __post_init__(self):
        d = self.mean.shape[0]
        assert self.mean.shape == (d,) and self.eigenvalues.shape == (d,) and self.eigenvectors.shape == (d, d), (
            f"P_N statistics have inconsistent shapes {tuple(self.mean.shape)}, {tuple(self.eigenvalues.shape)}, "
            f"{tuple(self.eigenvectors.shape)}"
        )
        if not bool((self.eigenvalues > 0).all()):
            raise ValueError("P_N covariance is singular (an eigenvalue <= 0); sample more codes than dimensions")
        if not 0.0 <= self.variance_floor < 1.0:
            raise ValueError(
                "P_N variance_floor must be in [0, 1) (a fraction of the largest eigenvalue), "
                f"got {self.variance_floor}"
            )

    @property
    def floor_value(self) -> float:
        """The absolute variance floor: `variance_floor` x the largest eigenvalue."""
        return self.variance_floor * float(self.eigenvalues.max())

    @property
    def whitening_variances(self) -> torch.Tensor:
        """[D] the eigenvalues raised to the floor: what `whiten` divides by (square roots)."""
        return self.eigenvalues.clamp(min=self.floor_value)

    @property
    def start_w(self) -> torch.Tensor:
        """[D] where the P_N spaces start: the w whose p is the mean of P, so p_N = 0."""
        return activate_p(self.mean)

    def regularizer(self, w: torch.Tensor) -> torch.Tensor:
        """mean(p_N^2) over the last dimension and any layer dimension: w [N, ..., D] -> [N]."""
        return self.whiten(w).square().flatten(1).mean(dim=1) if w.ndim > 1 else self.whiten(w).square().mean()

    def summary(self, *, fresh_w: torch.Tensor | None = None, w_avg: torch.Tensor | None = None) -> dict:
        """The spectrum and the well-posedness choices, JSON-ready; with fresh mapped codes [N, D] and w_avg [D]
        also mean(p_N^2) at the start point, at w_avg, and over the fresh codes (the regulariser's scale)."""
        vals = self.eigenvalues.double()
        out = dict(
            variance_floor=self.variance_floor,
            floor_value=self.floor_value,
            components=int(len(vals)),
            components_floored=int((vals < self.floor_value).sum()),
            eigenvalue_max=float(vals.max()),
            eigenvalue_min=float(vals.min()),
            condition_number=float(vals.max() / vals.min()),
            condition_number_whitened=float(vals.max() / self.whitening_variances.double().min()),
            eigenvalues_quantiles={str(q): float(vals.quantile(q)) for q in (0.0, 0.25, 0.5, 0.75, 1.0)},
            start="p_N mean (p = mean of P)",
            num_samples=self.num_samples,
            seed=self.seed,
        )
        with torch.no_grad():
            out["regularizer_at_start"] = float(self.regularizer(self.start_w))
            if w_avg is not None:
                out["regularizer_at_w_avg"] = float(self.regularizer(w_avg.double()))
            if fresh_w is not None:
                out["regularizer_fresh_mean"] = float(self.regularizer(fresh_w.double()).mean())
        return out

    def to(self, device) -> PNStats:
        move = lambda t: t.to(device)  # noqa: E731
        return replace(
            self, mean=move(self.mean), eigenvalues=move(self.eigenvalues), eigenvectors=move(self.eigenvectors)
        )

    def whiten(self, w: torch.Tensor) -> torch.Tensor:
        """w [..., D] -> p_N [..., D] (differentiable)."""
        p = deactivate_w(w)
        mean, vecs, vals = (t.to(w.device, w.dtype) for t in (self.mean, self.eigenvectors, self.whitening_variances))
        return ((p - mean) @ vecs) * vals.rsqrt()

    def check_generator(self, generator) -> None:
        """Raise if these statistics were computed from another mapping network."""
        if self.mapping_sha256 and self.mapping_sha256 != mapping_fingerprint(generator):
            raise ValueError(
                "these P_N statistics were computed for another generator (mapping fingerprint differs); "
                "recompute them with fzplus.pn_stats.compute_pn_stats(generator)"
            )

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Atomic write (fzplus.io): readers never see half a file."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(
            mean=self.mean.cpu().numpy(),
            eigenvalues=self.eigenvalues.cpu().numpy(),
            eigenvectors=self.eigenvectors.cpu().numpy(),
            num_samples=np.int64(self.num_samples),
            seed=np.int64(self.seed),
            mapping_sha256=np.str_(self.mapping_sha256),
            variance_floor=np.float64(self.variance_floor),
        )
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PNStats:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"P_N statistics file {path} does not exist; "
                "compute it with fzplus.pn_stats.compute_pn_stats(G).save(path)"
            )
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise ValueError(f"{path}: not a P_N statistics file (missing keys {missing}); recompute it")
            return cls(
                mean=torch.from_numpy(data["mean"]),
                eigenvalues=torch.from_numpy(data["eigenvalues"]),
                eigenvectors=torch.from_numpy(data["eigenvectors"]),
                num_samples=int(data["num_samples"]),
                seed=int(data["seed"]),
                mapping_sha256=str(data["mapping_sha256"]),
                variance_floor=float(data["variance_floor"]),
            )


def fit_pn_stats(
    batches, *, seed: int = -1, mapping_sha256: str = "", variance_floor: float = VARIANCE_FLOOR
) -> PNStats:
    """PCA of p from an iterable of [n_i, D] batches, accumulated in float64 around the first batch's mean
    (shifting first keeps the second-moment sums free of cancellation)."""
    shift = total = outer = None
    count = 0
    for p in batches:
        p = p.detach().to("cpu", torch.float64)
        if shift is None:
            shift = p.mean(dim=0)
            total, outer = torch.zeros_like(shift), torch.zeros(len(shift), len(shift), dtype=torch.float64)
        x = p - shift
        total += x.sum(dim=0)
        outer += x.t() @ x
        count += x.shape[0]
    if shift is None or count <= len(shift):
        raise ValueError(f"P_N statistics need more samples than dimensions; got {count}")
    centred_mean = total / count
    cov = (outer - count * torch.outer(centred_mean, centred_mean)) / (count - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    order = eigenvalues.argsort(descending=True)
    return PNStats(
        mean=shift + centred_mean,
        eigenvalues=eigenvalues[order],
        eigenvectors=eigenvectors[:, order],
        num_samples=count,
        seed=seed,
        mapping_sha256=mapping_sha256,
        variance_floor=variance_floor,
    )


@torch.no_grad()
def sample_p(generator, *, num_samples: int, seed: int, batch_size: int = 10_000, progress: bool = True):
    """Yield batches of p = deactivate_w(mapping(z)), z ~ N(0, I) drawn on the CPU from `seed`."""
    rng = torch.Generator().manual_seed(seed)
    device = generator.w_avg.device
    for start in tqdm(range(0, num_samples, batch_size), desc="P_N samples", unit="batch", disable=not progress):
        z = torch.randn(min(batch_size, num_samples - start), generator.z_dim, generator=rng)
        yield deactivate_w(generator.mapping(z.to(device, generator.w_avg.dtype)))


def compute_pn_stats(
    generator,
    *,
    num_samples: int = 1_000_000,
    seed: int = 0,
    batch_size: int = 10_000,
    variance_floor: float = VARIANCE_FLOOR,
    progress: bool = True,
) -> PNStats:
    """P_N statistics of a generator from `num_samples` mapped codes (paper: 1e6)."""
    batches = sample_p(generator, num_samples=num_samples, seed=seed, batch_size=batch_size, progress=progress)
    return fit_pn_stats(
        batches, seed=seed, mapping_sha256=mapping_fingerprint(generator), variance_floor=variance_floor
    )
