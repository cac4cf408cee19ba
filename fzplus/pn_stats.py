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
"""
from __future__ import annotations

import hashlib
import os
import pathlib
from dataclasses import dataclass

import numpy as np
import torch

from fzplus.io import atomic_write
import torch.nn.functional as F
from tqdm.auto import tqdm

from fzplus.generator.ops import LRELU_GAIN, LRELU_SLOPE

NPZ_KEYS = ("mean", "eigenvalues", "eigenvectors", "num_samples", "seed", "mapping_sha256")


def deactivate_w(w: torch.Tensor) -> torch.Tensor:
    """Exact inverse of the mapping's last activation: w [..., D] -> pre-activation p [..., D]."""
    return F.leaky_relu(w / LRELU_GAIN, negative_slope=1.0 / LRELU_SLOPE)


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
    """mean [D], eigenvalues [D] (descending), eigenvectors [D, D] (columns) of p = deactivate_w(w).

    Kept in float64: the smallest eigenvalues of a mapping network's p can be 1e-8 of the largest, and
    whitening divides by their square roots. `whiten` computes in the dtype of its input."""

    mean: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    num_samples: int
    seed: int
    mapping_sha256: str = ""

    def __post_init__(self):
        d = self.mean.shape[0]
        assert self.mean.shape == (d,) and self.eigenvalues.shape == (d,) and self.eigenvectors.shape == (d, d), \
            f"P_N statistics have inconsistent shapes {tuple(self.mean.shape)}, {tuple(self.eigenvalues.shape)}, {tuple(self.eigenvectors.shape)}"
        if not bool((self.eigenvalues > 0).all()):
            raise ValueError("P_N covariance is singular (an eigenvalue <= 0); sample more codes than dimensions")

    def to(self, device) -> "PNStats":
        move = lambda t: t.to(device)  # noqa: E731
        return PNStats(move(self.mean), move(self.eigenvalues), move(self.eigenvectors), self.num_samples, self.seed, self.mapping_sha256)

    def whiten(self, w: torch.Tensor) -> torch.Tensor:
        """w [..., D] -> p_N [..., D] (differentiable)."""
        p = deactivate_w(w)
        mean, vecs, vals = (t.to(w.device, w.dtype) for t in (self.mean, self.eigenvectors, self.eigenvalues))
        return ((p - mean) @ vecs) * vals.rsqrt()

    def check_generator(self, generator) -> None:
        """Raise if these statistics were computed from another mapping network."""
        if self.mapping_sha256 and self.mapping_sha256 != mapping_fingerprint(generator):
            raise ValueError("these P_N statistics were computed for another generator (mapping fingerprint differs); "
                             "recompute them with fzplus.pn_stats.compute_pn_stats(generator)")

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Atomic write (fzplus.io): readers never see half a file."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(mean=self.mean.cpu().numpy(), eigenvalues=self.eigenvalues.cpu().numpy(), eigenvectors=self.eigenvectors.cpu().numpy(),
                      num_samples=np.int64(self.num_samples), seed=np.int64(self.seed), mapping_sha256=np.str_(self.mapping_sha256))
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PNStats":
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"P_N statistics file {path} does not exist; compute it with fzplus.pn_stats.compute_pn_stats(G).save(path)")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise ValueError(f"{path}: not a P_N statistics file (missing keys {missing}); recompute it")
            return cls(mean=torch.from_numpy(data["mean"]), eigenvalues=torch.from_numpy(data["eigenvalues"]),
                       eigenvectors=torch.from_numpy(data["eigenvectors"]), num_samples=int(data["num_samples"]),
                       seed=int(data["seed"]), mapping_sha256=str(data["mapping_sha256"]))


def fit_pn_stats(batches, *, seed: int = -1, mapping_sha256: str = "") -> PNStats:
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
    return PNStats(mean=shift + centred_mean, eigenvalues=eigenvalues[order], eigenvectors=eigenvectors[:, order],
                   num_samples=count, seed=seed, mapping_sha256=mapping_sha256)


@torch.no_grad()
def sample_p(generator, *, num_samples: int, seed: int, batch_size: int = 10_000, progress: bool = True):
    """Yield batches of p = deactivate_w(mapping(z)), z ~ N(0, I) drawn on the CPU from `seed`."""
    rng = torch.Generator().manual_seed(seed)
    device = generator.w_avg.device
    for start in tqdm(range(0, num_samples, batch_size), desc="P_N samples", unit="batch", disable=not progress):
        z = torch.randn(min(batch_size, num_samples - start), generator.z_dim, generator=rng)
        yield deactivate_w(generator.mapping(z.to(device, generator.w_avg.dtype)))


def compute_pn_stats(generator, *, num_samples: int = 1_000_000, seed: int = 0, batch_size: int = 10_000, progress: bool = True) -> PNStats:
    """P_N statistics of a generator from `num_samples` mapped codes (paper: 1e6)."""
    batches = sample_p(generator, num_samples=num_samples, seed=seed, batch_size=batch_size, progress=progress)
    return fit_pn_stats(batches, seed=seed, mapping_sha256=mapping_fingerprint(generator))
