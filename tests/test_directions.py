"""Direction finders: planted structure is recovered, draws are reproducible, files and registry fail clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fzplus.edits.directions import Directions, direction_finders, find_directions, register_direction_finder
from fzplus.edits.directions.interfacegan import load_released_boundaries
from fzplus.edits.directions.random import SIGMA_AUTHORS_CODE, SIGMA_PAPER_TEXT

BOUNDARIES = "interfacegan-stylegan2-ffhq-z"


def abs_cos(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a @ b).abs() / (a.norm() * b.norm()))


def planted_linear_mapping(*, seed: int = 0, dim: int = 64):
    """w = P z + c with P = U diag(s) V^T: PCA of w must give U's columns (variances s^2), and Eq. 6 must
    give V's columns (the regression of z on x^k is P^T u_k / s_k^2 = v_k / s_k). 64-d, not 512: the
    sampling error of the Eq. 6 fit grows like sqrt(dim / num_samples)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    V, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    s = np.ones(dim)
    s[:4] = [8.0, 6.0, 4.5, 3.0]
    P = torch.from_numpy(U * s @ V.T).float()
    c = torch.from_numpy(rng.standard_normal(dim)).float()
    return (lambda z: z @ P.T + c), U, V, s


def test_registry_lists_the_finders_and_rejects_bad_plugins():
    assert {"random", "ganspace", "interfacegan", "interfacegan-released"} <= set(direction_finders())
    with pytest.raises(ValueError, match="registered twice"):
        register_direction_finder(name="random", find=lambda *, seed=0: None, description="dup")
    with pytest.raises(ValueError, match="description"):
        register_direction_finder(name="new-finder", find=lambda *, seed=0: None, description=" ")
    with pytest.raises(TypeError, match="keyword-only"):
        register_direction_finder(name="new-finder", find=lambda seed: None, description="positional")
    with pytest.raises(KeyError, match="unknown direction finder"):
        find_directions("no-such-finder")
    with pytest.raises(TypeError, match="does not take"):
        find_directions("random", sigmaa=0.1)
    assert "new-finder" not in direction_finders()


def test_random_directions_reproducible_with_configured_std():
    a = find_directions("random", count=64, seed=3)
    b = find_directions("random", count=64, seed=3, domain="W")
    c = find_directions("random", count=64, seed=4)
    assert torch.equal(a.vectors, b.vectors) and not torch.equal(a.vectors, c.vectors)
    assert a.vectors.shape == (64, 512) and not a.unit and a.method == "random"
    assert a.diagnostics["sigma"] == SIGMA_AUTHORS_CODE
    # 64 x 512 draws: the sample std is within ~1% of sigma (relative s.e. 1/sqrt(2 * 32768) = 0.4%).
    assert float(a.vectors.std()) == pytest.approx(SIGMA_AUTHORS_CODE, rel=0.02)
    assert abs(float(a.vectors.mean())) < 4 * SIGMA_AUTHORS_CODE / math.sqrt(a.vectors.numel())
    wide = find_directions("random", count=64, seed=3, sigma=SIGMA_PAPER_TEXT)
    assert SIGMA_PAPER_TEXT**2 == pytest.approx(0.04)
    assert torch.allclose(wide.vectors, a.vectors * (SIGMA_PAPER_TEXT / SIGMA_AUTHORS_CODE), rtol=1e-5)
    with pytest.raises(ValueError, match="sigma"):
        find_directions("random", sigma=0.0)


def test_ganspace_w_recovers_planted_principal_directions():
    mapping, U, _, s = planted_linear_mapping()
    dirs = find_directions(
        "ganspace",
        mapping=mapping,
        z_dim=64,
        domain="W",
        components=(0, 1, 2, 3),
        num_samples=20_000,
        batch_size=5_000,
        seed=1,
        progress=False,
    )
    assert dirs.domain == "W" and dirs.unit and dirs.names == ("pc0", "pc1", "pc2", "pc3")
    for k in range(4):
        assert abs_cos(dirs.vectors[k], U[:, k]) > 0.99
        v = dirs.vectors[k].double()
        assert v[v.abs().argmax()] > 0  # deterministic sign convention
    expected_ratio = s[:4] ** 2 / (s**2).sum()
    np.testing.assert_allclose(dirs.diagnostics["explained_variance_ratio"], expected_ratio, rtol=0.05)
    np.testing.assert_allclose(dirs.diagnostics["coordinate_std"], s[:4], rtol=0.03)


def test_ganspace_z_recovers_planted_linear_relation_eq6():
    mapping, U, V, _ = planted_linear_mapping(seed=2)
    dirs = find_directions(
        "ganspace",
        mapping=mapping,
        z_dim=64,
        domain="Z",
        components=(1, 2, 3),
        num_samples=20_000,
        batch_size=5_000,
        seed=1,
        progress=False,
    )
    assert dirs.domain == "Z" and dirs.names == ("pc1", "pc2", "pc3")
    w_dirs = find_directions(
        "ganspace",
        mapping=mapping,
        z_dim=64,
        domain="W",
        components=(1, 2, 3),
        num_samples=20_000,
        batch_size=5_000,
        seed=1,
        progress=False,
    )
    for row, k in enumerate((1, 2, 3)):
        assert abs_cos(dirs.vectors[row], V[:, k]) > 0.99
        # Moving z along n_k must increase the W coordinate x^k (signs tied through the regression).
        moved = mapping(dirs.vectors[row : row + 1]) - mapping(torch.zeros(1, 64))
        assert float(moved[0] @ w_dirs.vectors[row]) > 0
    assert min(dirs.diagnostics["z_coordinate_correlation"]) > 0.95


def test_ganspace_fast_path_matches_reference_on_a_generator(tiny_generator):
    kwargs = dict(
        mapping=tiny_generator.mapping, components=(0, 2, 5), num_samples=800, batch_size=400, seed=7, progress=False
    )
    for domain in ("W", "Z"):
        fast = find_directions("ganspace", domain=domain, **kwargs)
        slow = find_directions("ganspace", domain=domain, reference=True, **kwargs)
        assert fast.diagnostics["path"] == "moments" and slow.diagnostics["path"] == "reference"
        torch.testing.assert_close(fast.vectors, slow.vectors, atol=1e-5, rtol=0)
        np.testing.assert_allclose(fast.diagnostics["variance"], slow.diagnostics["variance"], rtol=1e-8)
    with pytest.raises(ValueError, match="G.mapping"):
        find_directions("ganspace", mapping=lambda z: tiny_generator.map(z), num_samples=10, progress=False)


def planted_attribute(*, n: int = 4_000, dim: int = 512, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((n, dim))
    normal = rng.standard_normal(dim)
    normal /= np.linalg.norm(normal)
    return codes, codes @ normal + 0.1 * rng.standard_normal(n), normal


def test_interfacegan_svm_separates_planted_attribute():
    codes, scores, normal = planted_attribute()
    scores[:50] = np.nan  # e.g. faces the labeller did not find
    dirs = find_directions(
        "interfacegan", codes=torch.from_numpy(codes), scores=scores, names=["planted"], chosen=0.2, seed=0
    )
    assert dirs.method == "interfacegan" and dirs.unit and dirs.names == ("planted",)
    cos = float(dirs.vectors[0].double() @ torch.from_numpy(normal))
    assert cos > 0.9  # signed: the direction points to higher scores
    assert dirs.diagnostics["validation_accuracy"][0] > 0.95
    assert dirs.diagnostics["invalid"] == [50] and dirs.diagnostics["valid"] == [3_950]
    # InterFaceGAN's split: 20% of the valid codes per side, 70% of them for training.
    assert dirs.diagnostics["train_per_side"] == [int(int(3_950 * 0.2) * 0.7)]
    table = dirs.diagnostics_table()  # what tables/directions.csv and the report show
    assert list(table["direction"]) == ["planted"] and table.loc[0, "method"] == "interfacegan"
    assert table.loc[0, "validation_accuracy"] == dirs.diagnostics["validation_accuracy"][0]
    assert table.loc[0, "norm"] == pytest.approx(1.0, abs=1e-6)
    assert "split_ratio" not in table  # fit-wide settings are not per-direction rows


def test_interfacegan_takes_named_score_columns_and_rejects_tiny_sets():
    import pandas as pd

    codes, scores, normal = planted_attribute(n=1_000, dim=16, seed=1)
    frame = pd.DataFrame({"up": scores, "down": -scores})
    dirs = find_directions("interfacegan", codes=codes, scores=frame, chosen=0.3, domain="W")
    assert dirs.names == ("up", "down") and dirs.domain == "W"
    normal = torch.from_numpy(normal).float()
    assert float(dirs["up"] @ normal) > 0.95 and float(dirs["down"] @ normal) < -0.95
    again = find_directions("interfacegan", codes=codes, scores=frame, chosen=0.3, domain="W")
    assert torch.equal(again.vectors, dirs.vectors)  # seeded split
    with pytest.raises(ValueError, match="too few"):
        find_directions("interfacegan", codes=codes[:20], scores=scores[:20], chosen=0.02)


def test_released_boundaries_load_from_the_mirror(mirror):
    folder = mirror / BOUNDARIES
    every = load_released_boundaries(folder)
    assert len(every) == len(list(folder.glob("boundary_*.npy"))) and every.dim == 512
    torch.testing.assert_close(every.vectors.norm(dim=1), torch.ones(len(every)), atol=1e-5, rtol=0)
    two = find_directions("interfacegan-released", folder=folder, names=["Smiling", "Young"])
    assert two.names == ("Smiling", "Young") and two.domain == "Z" and two.method == "interfacegan-released"
    stored = np.load(folder / "boundary_Smiling.npy")
    np.testing.assert_allclose(two["Smiling"].numpy(), stored[0] / np.linalg.norm(stored), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="boundary_Grinning.npy"):
        load_released_boundaries(folder, ["Grinning"])


def test_released_boundaries_bad_files_name_the_file(tmp_path):
    (tmp_path / "boundary_Garbage.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="boundary_Garbage.npy"):
        load_released_boundaries(tmp_path, ["Garbage"])
    np.save(tmp_path / "boundary_Wide.npy", np.ones((2, 512), np.float32))
    with pytest.raises(ValueError, match=r"boundary_Wide.npy.*\(2, 512\)"):
        load_released_boundaries(tmp_path, ["Wide"])
    np.save(tmp_path / "boundary_Zero.npy", np.zeros((1, 512), np.float32))
    with pytest.raises(ValueError, match="boundary_Zero.npy"):
        load_released_boundaries(tmp_path, ["Zero"])


def test_directions_record_validates_and_round_trips(tmp_path):
    dirs = find_directions("random", count=3, seed=0)
    path = tmp_path / "random.npz"
    dirs.save(path)
    back = Directions.load(path)
    assert torch.equal(back.vectors, dirs.vectors) and back.names == dirs.names and back.unit is False
    assert back.diagnostics["sigma"] == dirs.diagnostics["sigma"]
    with pytest.raises(ValueError, match="unit"):
        Directions(vectors=torch.ones(1, 4), domain="Z", names=("a",), method="x", unit=True)
    with pytest.raises(ValueError, match="domain"):
        Directions(vectors=torch.ones(1, 4), domain="S", names=("a",), method="x", unit=False)
    with pytest.raises(ValueError, match="names"):
        Directions(vectors=torch.ones(2, 4), domain="Z", names=("a", "a"), method="x", unit=False)
