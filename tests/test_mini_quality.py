"""The mini generator's quality measures: Frechet distance on known Gaussians, style-mixing grid layout,
latent-sensitivity split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.studies.mini_generator_quality import frechet_distance, latent_sensitivity, style_mixing_grid
from tests.conftest import make_tiny_generator


def whitened(n: int, d: int, seed: int) -> np.ndarray:
    """n x d samples with exactly zero mean and identity sample covariance (np.cov, ddof=1)."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    x -= x.mean(0)
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    return u @ vt * np.sqrt(n - 1)


def test_frechet_distance_known_values():
    x = whitened(500, 6, seed=0)
    shift = np.arange(6) * 0.5
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(x, x + shift) == pytest.approx(np.sum(shift**2), rel=1e-8)
    var_a, var_b = np.array([1, 2, 3, 4, 5, 6.0]), np.array([6, 5, 4, 3, 2, 1.0])
    expected = np.sum(shift**2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    assert frechet_distance(x * np.sqrt(var_a), x * np.sqrt(var_b) + shift) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(x, x * np.sqrt(var_a)) == pytest.approx(frechet_distance(x * np.sqrt(var_a), x), rel=1e-8)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(x, x[:, :3])


def test_style_mixing_grid_layout():
    G = make_tiny_generator(resolution=32)
    rows, cols = (
        torch.randn(2, 512, generator=torch.Generator().manual_seed(1)),
        torch.randn(3, 512, generator=torch.Generator().manual_seed(2)),
    )
    grid = style_mixing_grid(G, rows, cols, coarse_layers=4)
    assert grid.shape == (3 * 4, 3, 32, 32)
    assert torch.equal(grid[0], torch.ones(3, 32, 32))  # blank corner
    assert torch.allclose(grid[1:4], G(cols), atol=1e-5)  # header row: column sources
    assert torch.allclose(grid[4], G(rows[:1])[0], atol=1e-5)  # header column: row sources
    ws = G.map(cols[1:2]).clone()
    ws[:, :4] = G.map(rows[1:2])[:, :4]
    assert torch.allclose(grid[2 * 4 + 2], G.synthesize(ws)[0], atol=1e-5)  # row 1, column 1
    all_coarse = style_mixing_grid(G, rows, cols, coarse_layers=G.num_ws)
    assert torch.allclose(all_coarse[5:8], G(rows[:1]).expand(3, -1, -1, -1), atol=1e-5)


def test_latent_sensitivity_detects_an_inert_complement():
    G = make_tiny_generator(resolution=32)
    projection = torch.linalg.qr(torch.randn(512, 100, generator=torch.Generator().manual_seed(3)))[0].t()  # [100, 512]
    balanced = latent_sensitivity(G, projection, samples=32)
    assert 0.5 < balanced["ratio"] < 2.0  # a random generator does not single out the subspace

    class OnlySubspace(torch.nn.Module):  # G that sees only the projected code: the complement is inert
        z_dim = 512

        def forward(self, z):
            return G(z @ projection.t() @ projection)

    blind = latent_sensitivity(OnlySubspace(), projection, samples=32)
    assert blind["complement"] < 1e-4 * blind["paired_subspace"] and blind["ratio"] > 1e3
