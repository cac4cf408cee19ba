"""Latent-space plugins: registry, contract checks, per-space behaviour, P_N statistics."""

from __future__ import annotations

import importlib.util
import math
import pathlib
import shutil
import sys

import numpy as np
import pytest
import torch

import spaces
from conftest import encoder_for, make_tiny_generator
from fzplus.generator.ops import LRELU_GAIN, LRELU_SLOPE
from fzplus.pn_stats import PNStats, activate_p, compute_pn_stats, deactivate_w, fit_pn_stats, sample_p
from spaces.base import LatentSpace, RegistrationError, SpaceContext, retract_to_sphere

PAPER_SPACES = {"Z", "Z+", "W", "W+", "W+(P_N)", "S", "F/Z", "F/Z+", "F/W", "F/W+", "F/W+(P_N)", "F/S"}
METHODS = {
    "PTI",
    "PTI w/ Z+",
    "IDInvert",
    "SAM",
    "SAM w/ Z+",
}  # methods built on a space (spaces/_tuning.py, spaces/idinvert.py, spaces/_sam.py)
Z_TYPE = ("Z", "Z+", "F/Z", "F/Z+")
BASE = 16


def ctx_for(G, space, **kwargs) -> SpaceContext:
    return SpaceContext(generator=G, base_size=BASE if space.uses_base_code else None, **kwargs)


# ---- registry ----------------------------------------------------------------------------------------
def test_registry_lists_the_twelve_paper_spaces_and_the_methods():
    assert set(spaces.names()) == PAPER_SPACES | METHODS and len(spaces.names()) == 17
    slugs = {spaces.get(n).slug for n in spaces.names()}
    assert len(slugs) == 17
    for name in spaces.names():
        space = spaces.get(name)
        assert spaces.get(space.slug) is space and space.name == name
    assert spaces.get("F/Z+").slug == "f_z_plus"


def test_unknown_space_names_the_known_ones():
    with pytest.raises(KeyError, match="F/Z\\+"):
        spaces.get("F/Q")


def import_package_copy(tmp_path, package_name: str, extra_files: dict[str, str]):
    """Copy spaces/ under another package name, add files, import the copy (nothing else is edited)."""
    target = tmp_path / package_name
    shutil.copytree(pathlib.Path(spaces.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in extra_files.items():
        (target / name).write_text(text)
    spec = importlib.util.spec_from_file_location(
        package_name, target / "__init__.py", submodule_search_locations=[str(target)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[package_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def package_copy(tmp_path):
    imported = []

    def make(name, extra):
        imported.append(name)
        return import_package_copy(tmp_path, name, extra)

    yield make
    for name in imported:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


THROWAWAY = '''"""A space added by dropping one file into the package."""
from ._families import WSpace

SPACE = WSpace(name="Throwaway", slug="throwaway", per_layer=True, uses_base_code=False, description="test plugin")
'''


def test_a_new_plugin_file_is_discovered_without_other_edits(package_copy):
    copy = package_copy("spaces_copy_discovery", {"throwaway.py": THROWAWAY})
    assert set(copy.names()) == PAPER_SPACES | METHODS | {"Throwaway"}
    assert copy.get("throwaway").name == "Throwaway"
    assert copy.registry().source("Throwaway").endswith("throwaway.py")
    assert "Throwaway" not in spaces.names()  # the real package is untouched


def test_duplicate_name_in_a_plugin_file_is_a_clear_error(package_copy):
    duplicate = THROWAWAY.replace('name="Throwaway"', 'name="F/Z+"')
    copy = package_copy("spaces_copy_duplicate", {"zz_duplicate.py": duplicate})
    with pytest.raises(
        copy.RegistrationError, match=r"zz_duplicate\.py.*'F/Z\+' is already registered by .*f_z_plus\.py"
    ):
        copy.names()


def test_plugin_module_without_space_is_a_clear_error(package_copy):
    copy = package_copy("spaces_copy_nospace", {"helper_not_plugin.py": "X = 1\n"})
    with pytest.raises(copy.RegistrationError, match=r"helper_not_plugin\.py: plugin module defines no SPACE"):
        copy.names()


def test_direct_duplicate_and_missing_field_registration():
    registry = spaces.SpaceRegistry()
    registry.register(spaces.get("Z"), source="first")
    with pytest.raises(RegistrationError, match="'Z' is already registered by first"):
        registry.register(spaces.get("Z"), source="second")

    class Incomplete(LatentSpace):
        name, domain, variables = "Incomplete", "W", ("w",)
        uses_base_code, applies_truncation, description = False, False, "no slug"

        def init_codes(self, targets, ctx, *, image_seeds, encoder=None): ...
        def generator_inputs(self, codes, ctx): ...
        def apply_direction(self, codes, direction, alpha, ctx): ...

    with pytest.raises(RegistrationError, match=r"lacks required field\(s\) \['slug'\]"):
        registry.register(Incomplete(), source="incomplete.py")
    bad_domain = Incomplete()
    bad_domain.slug, bad_domain.domain = "incomplete", "X"
    with pytest.raises(RegistrationError, match="domain 'X'"):
        registry.register(bad_domain, source="incomplete.py")
    with pytest.raises(RegistrationError, match="instance of spaces.base.LatentSpace"):
        registry.register(object(), source="junk.py")


# ---- per-space behaviour ---------------------------------------------------------------------------
def test_edited_layers_all_for_standalone_and_detail_layers_for_f_spaces(tiny_generator):
    G = tiny_generator
    M = G.first_detail_layer(BASE)
    assert 0 < M < G.num_ws
    for name in spaces.names():
        space = spaces.get(name)
        expected = range(M, G.num_ws) if name.startswith("F/") else range(G.num_ws)
        assert space.edited_layers(ctx_for(G, space)) == expected, name
        assert space.uses_base_code == name.startswith("F/")
        assert space.domain == ("Z" if name in (*Z_TYPE, "PTI w/ Z+", "SAM w/ Z+") else "W")


def test_retract_to_sphere_keeps_direction_and_sets_radius():
    z = torch.randn(5, 3, 512) * torch.rand(5, 3, 1) * 4
    r = retract_to_sphere(z)
    assert torch.allclose(r.norm(dim=-1), torch.full((5, 3), math.sqrt(512)), atol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(r, z, dim=-1)
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-6)


@pytest.mark.parametrize("name", Z_TYPE)
def test_z_init_is_seeded_and_on_the_sphere(tiny_generator, name):
    space = spaces.get(name)
    ctx = ctx_for(tiny_generator, space)
    x = torch.zeros(3, 3, 32, 32)
    a = space.init_codes(x, ctx, image_seeds=[1, 2, 3])["z"]
    b = space.init_codes(x, ctx, image_seeds=[1, 2, 4])["z"]
    assert torch.equal(a[:2], b[:2]) and not torch.allclose(a[2], b[2])
    assert torch.allclose(a.norm(dim=-1), torch.full(a.shape[:-1], math.sqrt(512)), atol=1e-4)
    per_layer = name.endswith("+")
    assert a.ndim == (3 if per_layer else 2)


def test_w_spaces_start_at_w_avg_and_f_at_the_mean_feature_map(tiny_generator):
    G = tiny_generator
    x = torch.zeros(2, 3, 32, 32)
    for name in ("W", "W+", "F/W+"):
        space = spaces.get(name)
        codes = space.init_codes(x, ctx_for(G, space), image_seeds=[0, 0])
        assert torch.equal(codes["w"].reshape(-1, 512), G.w_avg.expand(codes["w"].reshape(-1, 512).shape[0], 512))
    codes = spaces.get("F/W+").init_codes(x, ctx_for(G, spaces.get("F/W+")), image_seeds=[0, 0])
    mean_features = G.features(G.w_avg[None, None].repeat(1, G.num_ws, 1), at=BASE).f
    assert torch.equal(codes["f"], mean_features.expand(2, -1, -1, -1))


def test_encoder_output_initialises_f_and_a_wrong_shape_is_refused(tiny_generator):
    G = tiny_generator
    space = spaces.get("F/Z+")
    x = torch.randn(2, 3, 32, 32)
    f = torch.randn(2, G.base_channels(BASE), BASE, BASE)
    codes = space.init_codes(x, ctx_for(G, space), image_seeds=[0, 1], encoder=lambda images: f)
    assert torch.equal(codes["f"], f)
    with pytest.raises(ValueError, match=r"needs \[N, 32, 16, 16\]"):
        space.init_codes(x, ctx_for(G, space), image_seeds=[0, 1], encoder=lambda images: f[:, :, :8, :8])


@pytest.mark.parametrize("name", ["S", "F/S"])
def test_s_edit_in_w_equals_restyling_from_the_moved_w(tiny_generator, name):
    G = tiny_generator
    space = spaces.get(name)
    ctx = ctx_for(G, space)
    ws = G.map(torch.randn(2, G.num_ws, 512))
    styles = G.styles(ws)
    codes = {"s": torch.cat([styles[p] for p in space.positions(ctx)], dim=1)}
    n, alpha = torch.randn(512), 1.7
    moved = space.apply_direction(codes, n, alpha, ctx)["s"]
    restyled = G.styles(ws + alpha * n)
    expected = torch.cat([restyled[p] for p in space.positions(ctx)], dim=1)
    assert torch.allclose(moved, expected, atol=1e-5)


def test_truncation_applies_where_the_authors_apply_it(tiny_generator):
    G = tiny_generator
    x = torch.zeros(1, 3, 32, 32)
    stats = compute_pn_stats(G, num_samples=1024, seed=0, batch_size=1024, progress=False)
    for name in spaces.names():
        space = spaces.get(name)
        pn = dict(pn_stats=stats) if space.needs_pn_stats else {}
        codes = space.init_codes(x, ctx_for(G, space, **pn), image_seeds=[5], encoder=encoder_for(space, G))
        key = "s" if "s" in codes else ("z" if "z" in codes else "w")
        codes[key] = codes[key] + 0.5 * torch.randn_like(codes[key])  # move off w_avg, where psi has no effect
        plain = space.render(codes, ctx_for(G, space, **pn))
        truncated = space.render(codes, ctx_for(G, space, truncation_psi=0.7, truncation_cutoff=8, **pn))
        assert space.applies_truncation == (name in Z_TYPE or name in ("W", "F/W", "PTI", "PTI w/ Z+", "SAM w/ Z+")), (
            name
        )  # the pivots W, Z+
        assert torch.equal(plain, truncated) != space.applies_truncation, name


def test_pn_space_without_statistics_says_how_to_get_them(tiny_generator):
    space = spaces.get("W+(P_N)")
    with pytest.raises(ValueError, match="compute_pn_stats"):
        space.init_codes(torch.zeros(1, 3, 32, 32), ctx_for(tiny_generator, space), image_seeds=[0])
    with pytest.raises(ValueError, match="compute_pn_stats"):
        space.regularizer({"w": tiny_generator.w_avg.expand(1, 4, -1)}, ctx_for(tiny_generator, space))


# ---- P_N statistics --------------------------------------------------------------------------------------
def test_deactivation_undoes_the_mappings_last_activation_exactly(tiny_generator):
    G = tiny_generator
    last = getattr(G.mapping, f"fc{G.mapping.num_layers - 1}")
    captured = {}
    handle = last.register_forward_hook(lambda module, args, out: captured.update(x=args[0]))
    w = G.mapping(torch.randn(64, 512))
    handle.remove()
    pre_activation = captured["x"] @ (last.weight * last.weight_gain).t() + last.bias * last.bias_gain
    assert (pre_activation < 0).any() and (pre_activation > 0).any()
    assert torch.allclose(deactivate_w(w), pre_activation, rtol=1e-5, atol=1e-6)
    a = torch.linspace(-3, 3, 101)
    activated = torch.nn.functional.leaky_relu(a, LRELU_SLOPE) * LRELU_GAIN
    assert torch.allclose(deactivate_w(activated), a, atol=1e-6)


def test_whitening_the_fitting_samples_is_exact(tiny_generator):
    p = torch.cat(list(sample_p(tiny_generator, num_samples=3000, seed=3, batch_size=1000, progress=False))).double()
    stats = fit_pn_stats([p[:1000], p[1000:]], variance_floor=0.0)  # BDInvert's exact whitening
    w = activate_p(p)  # back to W
    y = stats.whiten(w)
    assert y.mean(0).abs().max() < 1e-6
    assert (torch.cov(y.t()) - torch.eye(512, dtype=y.dtype)).abs().max() < 1e-5


def test_whitening_fresh_codes_gives_zero_mean_and_identity_covariance(tiny_generator):
    n = 20_000
    stats = compute_pn_stats(
        tiny_generator, num_samples=n, seed=0, batch_size=10_000, variance_floor=0.0, progress=False
    )
    fresh = torch.cat(list(sample_p(tiny_generator, num_samples=n, seed=1, batch_size=10_000, progress=False))).double()
    y = stats.whiten(activate_p(fresh))
    # Both the fit and the fresh sample are n draws in d = 512 dimensions. A sample covariance of n draws
    # has its eigenvalues, relative to the true ones, within [(1 - s)^2, (1 + s)^2], s = sqrt(d / n)
    # (Marchenko-Pastur edges); whitening fresh samples with fitted statistics compounds two such
    # factors, so the whitened covariance must have its spectrum in [((1-s)/(1+s))^2, ((1+s)/(1-s))^2]
    # ([0.53, 1.9] here). A wrong scale or rotation spreads it over orders of magnitude. Each coordinate
    # mean has std at most sqrt(2/n) / (1 - s) (fit and fresh means, through that whitening); 5 of them
    # bound the largest of 512 (p ~ 3e-4 for Gaussian means).
    d = 512
    s = math.sqrt(d / n)
    assert y.mean(0).abs().max() < 5 * math.sqrt(2 / n) / (1 - s)
    spectrum = torch.linalg.eigvalsh(torch.cov(y.t()))
    assert spectrum.min() > ((1 - s) / (1 + s)) ** 2 and spectrum.max() < ((1 + s) / (1 - s)) ** 2
    assert abs(spectrum.mean().item() - 1) < 2 * s**2 + 0.01  # trace: E = n / (n - d - 1) ~ 1 + s^2


def test_pn_stats_save_load_roundtrip_is_atomic_and_checked(tiny_generator, tmp_path):
    stats = compute_pn_stats(tiny_generator, num_samples=1024, seed=7, batch_size=512, progress=False)
    path = stats.save(tmp_path / "sub" / "pn.npz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["pn.npz"]  # no temporary file left behind
    loaded = PNStats.load(path)
    assert torch.equal(loaded.eigenvectors, stats.eigenvectors) and loaded.seed == 7 and loaded.num_samples == 1024
    loaded.check_generator(tiny_generator)
    with pytest.raises(ValueError, match="another generator"):
        loaded.check_generator(make_tiny_generator(seed=1))
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match="missing keys"):
        PNStats.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="compute_pn_stats"):
        PNStats.load(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="more samples than dimensions"):
        compute_pn_stats(tiny_generator, num_samples=100, progress=False)


def test_variance_floor_raises_only_the_small_eigenvalues_and_the_start_whitens_to_zero(tiny_generator):
    exact = compute_pn_stats(
        tiny_generator, num_samples=2048, seed=0, batch_size=1024, variance_floor=0.0, progress=False
    )
    floored = PNStats(
        exact.mean, exact.eigenvalues, exact.eigenvectors, exact.num_samples, exact.seed, variance_floor=1e-3
    )
    floor = 1e-3 * float(exact.eigenvalues.max())
    kept = exact.eigenvalues >= floor
    assert 0 < int(kept.sum()) < 512  # this generator's W is degenerate too
    w = tiny_generator.mapping(torch.randn(8, 512, generator=torch.Generator().manual_seed(4))).double()
    assert torch.equal(floored.whiten(w)[:, kept], exact.whiten(w)[:, kept])  # BDInvert's whitening above the floor
    assert torch.allclose(floored.whitening_variances[~kept], torch.tensor(floor, dtype=torch.float64))
    assert torch.allclose(deactivate_w(floored.start_w), floored.mean, atol=1e-10)
    assert float(floored.regularizer(floored.start_w)) < 1e-20
    with pytest.raises(ValueError, match="variance_floor"):
        PNStats(exact.mean, exact.eigenvalues, exact.eigenvectors, 1, 0, variance_floor=1.0)
