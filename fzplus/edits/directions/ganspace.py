"""GANSpace directions (Härkönen et al. 2020) in W, and in Z by the paper's regression (Eq. 6).

PCA of w = mapping(z) over `num_samples` draws z ~ N(0, I) gives the mean mu and the basis V (columns
v_k, variances lambda_k, descending). In W the directions are the components v_k themselves. In Z
(paper §3.4, Eq. 6): with PCA coordinates x_j = V^T (w_j - mu), component k's direction is the
least-squares fit n_k = argmin_n sum_j ||n x_j^k - z_j||^2 = sum_j x_j^k z_j / sum_j (x_j^k)^2, then
normalised. GANSpace's code fits all components jointly on fresh samples; on the PCA samples themselves
the coordinates are exactly uncorrelated, so the joint and the per-component fits coincide there.

Component indices are 0-BASED: component 0 has the largest variance. The paper's Fig. 7 "2nd, 3rd and
4th" directions are components (1, 2, 3); the authors' code edits components [10, 11, 12, 13, 14]
(0-based indices into GANSpace's `lat_comp`). Names are "pc<k>" with the same 0-based k.

Sign: a principal axis has no sign; each v_k is flipped so that its largest-magnitude entry is
positive (deterministic); n_k inherits the sign through x^k.

Scale: vectors are unit. For W, the authors' code (edit_ganspace.py) multiplies the step by the std of
the W coordinate along the component (GANSpace's `lat_stdev`, sqrt(lambda_k), in the diagnostics as
`coordinate_std`); for Z, `lat_stdev` is 1. fzplus.edits.calibration turns the vectors into those steps.

Fast path (default): one pass accumulating first and second moments in float64; since
sum_j x_j^k z_j = (sum_j z_j w_j^T - n zbar mu^T) v_k, Eq. 6 needs no second pass. Reference path
(`reference=True`): keeps every sample, PCA by SVD of the centred data, and solves Eq. 6 literally with
`numpy.linalg.lstsq` per component. Both give the same directions to float64 round-off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from fzplus.edits.directions import DOMAINS, Directions, register_direction_finder


def find_ganspace_directions(
    *,
    mapping: Callable[[torch.Tensor], torch.Tensor],
    z_dim: int = 512,
    domain: str = "Z",
    components: Sequence[int] = (1, 2, 3),
    num_samples: int = 100_000,
    batch_size: int = 10_000,
    seed: int = 0,
    device: str | torch.device = "cpu",
    reference: bool = False,
    progress: bool = True,
) -> Directions:
    """mapping: z [B, z_dim] -> w [B, w_dim] (e.g. `G.mapping`, no truncation). Returns unit vectors
    [len(components), z_dim] (domain "Z") or [len(components), w_dim] (domain "W")."""
    if domain not in DOMAINS:
        raise ValueError(f"ganspace: domain must be one of {DOMAINS}, got {domain!r}")
    components = [int(k) for k in components]
    if not components or len(set(components)) != len(components) or min(components) < 0:
        raise ValueError(f"ganspace: components must be distinct 0-based indices, got {components}")
    if num_samples < 2 or batch_size < 1:
        raise ValueError(f"ganspace: need num_samples >= 2 and batch_size >= 1, got {num_samples}, {batch_size}")
    z_batches = sample_z_batches(z_dim=z_dim, num_samples=num_samples, batch_size=batch_size, seed=seed)
    pairs = _map_batches(mapping, z_batches, device=device, progress=progress)
    # One BLAS thread: these decompositions are too small to gain from threads, and OpenBLAS's threaded
    # LAPACK slows down 50-100x on busy CPUs (measured: eigh of 512x512 in 10 s instead of 0.1 s on 2 cores).
    with threadpool_limits(limits=1, user_api="blas"):
        fit = _fit_reference(pairs) if reference else _fit_moments(pairs)
    eigenvalues, basis = fit["eigenvalues"], fit["basis"]  # [D], [D, D] columns v_k, descending
    if max(components) >= basis.shape[1]:
        raise ValueError(f"ganspace: component {max(components)} requested but w has only {basis.shape[1]} dims")
    selected = basis[:, components]  # [D, K]
    diagnostics = dict(
        components=components,
        index_base=0,
        num_samples=int(num_samples),
        seed=int(seed),
        variance=eigenvalues[components].tolist(),
        explained_variance_ratio=(eigenvalues[components] / eigenvalues.sum()).tolist(),
        coordinate_std=np.sqrt(eigenvalues[components]).tolist(),
        path="reference" if reference else "moments",
    )
    if domain == "W":
        vectors = selected.T  # [K, w_dim]
    else:
        vectors = fit["z_regression"](components)  # [K, z_dim], Eq. 6, unnormalised
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        # How faithfully moving along n_k in Z moves the W coordinate x^k (1 = perfectly).
        diagnostics["z_coordinate_correlation"] = fit["z_correlation"](vectors, components).tolist()
    return Directions(
        vectors=torch.from_numpy(np.ascontiguousarray(vectors)),
        domain=domain,
        names=tuple(f"pc{k}" for k in components),
        method="ganspace",
        unit=True,
        diagnostics=diagnostics,
    )


def sample_z_batches(*, z_dim: int, num_samples: int, batch_size: int, seed: int):
    """The same z sequence for a seed whatever the device: drawn on the CPU."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, num_samples, batch_size):
        yield torch.randn(min(batch_size, num_samples - start), z_dim, generator=g)


def _map_batches(mapping, z_batches, *, device, progress: bool):
    """Yields (z, w) as float64 numpy arrays [B, z_dim], [B, w_dim]."""
    with torch.no_grad():
        for z in tqdm(z_batches, desc="ganspace: mapping z -> w", disable=not progress, leave=False):
            w = mapping(z.to(device))
            if not (isinstance(w, torch.Tensor) and w.ndim == 2 and w.shape[0] == z.shape[0]):
                raise ValueError(
                    f"ganspace: mapping must return w [B, w_dim] for z [B, z_dim], got "
                    f"{tuple(getattr(w, 'shape', ()))} (pass G.mapping, not G.map, which broadcasts ws)"
                )
            yield z.double().numpy(), w.detach().cpu().double().numpy()


def _orient(basis: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive."""
    rows = np.abs(basis).argmax(axis=0)
    return basis * np.sign(basis[rows, np.arange(basis.shape[1])])


def _fit_moments(pairs) -> dict:
    n, sum_z, sum_w, sum_ww, sum_zw, sum_zz = 0, 0.0, 0.0, 0.0, 0.0, 0.0
    for z, w in pairs:
        n += z.shape[0]
        sum_z, sum_w = sum_z + z.sum(0), sum_w + w.sum(0)
        sum_ww, sum_zw, sum_zz = sum_ww + w.T @ w, sum_zw + z.T @ w, sum_zz + z.T @ z
    mu, z_mean = sum_w / n, sum_z / n
    cov_w = (sum_ww - n * np.outer(mu, mu)) / (n - 1)  # [D, D]
    cov_zw = (sum_zw - n * np.outer(z_mean, mu)) / (n - 1)  # [z_dim, D]
    cov_z = (sum_zz - n * np.outer(z_mean, z_mean)) / (n - 1)  # [z_dim, z_dim]
    eigenvalues, basis = np.linalg.eigh((cov_w + cov_w.T) / 2)
    eigenvalues, basis = np.clip(eigenvalues[::-1], 0.0, None), _orient(basis[:, ::-1])

    def z_regression(ks):  # sum_j x_j^k z_j / sum_j (x_j^k)^2, with the common factor (n - 1) cancelled
        return (cov_zw @ basis[:, ks] / eigenvalues[ks]).T

    def z_correlation(unit_vectors, ks):  # corr(z . n_k, x^k) from the moments
        cross = np.einsum("kz,zk->k", unit_vectors, cov_zw @ basis[:, ks])
        return cross / np.sqrt(eigenvalues[ks] * np.einsum("kz,zy,ky->k", unit_vectors, cov_z, unit_vectors))

    return dict(eigenvalues=eigenvalues, basis=basis, z_regression=z_regression, z_correlation=z_correlation)


def _fit_reference(pairs) -> dict:
    zs, ws = zip(*pairs)
    z, w = np.concatenate(zs), np.concatenate(ws)  # [n, z_dim], [n, D]
    centred = w - w.mean(0)
    _, singular, vh = np.linalg.svd(centred, full_matrices=False)
    eigenvalues = singular**2 / (len(w) - 1)
    basis = _orient(vh.T)
    coords = centred @ basis  # x_j = V^T (w_j - mu), [n, D]

    def z_regression(ks):
        return np.stack([np.linalg.lstsq(coords[:, k : k + 1], z, rcond=None)[0][0] for k in ks])

    def z_correlation(unit_vectors, ks):
        return np.array([np.corrcoef(z @ v, coords[:, k])[0, 1] for v, k in zip(unit_vectors, ks)])

    return dict(eigenvalues=eigenvalues, basis=basis, z_regression=z_regression, z_correlation=z_correlation)


register_direction_finder(
    name="ganspace",
    find=find_ganspace_directions,
    description="GANSpace: PCA of w = mapping(z); in Z by least-squares regression (Eq. 6)",
)
