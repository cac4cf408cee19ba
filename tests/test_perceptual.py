"""Perceptual backends: identities, differentiability, batch independence, frozen weights, offline errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from fzplus.perceptual import BACKENDS, VGG16_FILE, LpipsVGG, PerceptualWeightsUnavailable, build_perceptual


@pytest.fixture(scope="module")
def stlpips():
    return build_perceptual("stlpips-vgg")


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    return (
        base,
        (base + 0.1 * torch.randn(base.shape, generator=g)).clamp(-1, 1),
        (base + 0.4 * torch.randn(base.shape, generator=g)).clamp(-1, 1),
    )


def test_registry_has_both_backends():
    assert {"lpips-vgg", "stlpips-vgg"} <= set(BACKENDS)
    with pytest.raises(KeyError, match="stlpips-vgg"):
        build_perceptual("nope")


def test_stlpips_self_distance_is_zero_and_grows_with_noise(stlpips, images):
    base, slightly, strongly = images
    d_self, d_slight, d_strong = stlpips(base, base), stlpips(base, slightly), stlpips(base, strongly)
    assert d_self.shape == (3,)
    assert d_self.abs().max() < 1e-6
    assert (d_slight > 1e-3).all() and (d_strong > d_slight).all()


def test_stlpips_is_differentiable_and_frozen(stlpips, images):
    base, slightly, _ = images
    x = slightly.clone().requires_grad_(True)
    stlpips(x, base).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in stlpips.parameters())
    stlpips.train()
    assert not stlpips.training and not any(m.training for m in stlpips.modules())


def test_cached_target_features_match_the_package_forward(stlpips, images):
    base, slightly, strongly = images
    fast = stlpips.prepare(base)
    assert torch.allclose(fast(slightly), stlpips(slightly, base), rtol=1e-5, atol=1e-7)
    stlpips.cache_target_features = False
    try:
        reference = stlpips.prepare(base)
        assert torch.allclose(reference(strongly), fast(strongly), rtol=1e-5, atol=1e-7)
    finally:
        stlpips.cache_target_features = True


def test_channels_last_trunk_gives_the_plain_paths_distances_and_gradients(stlpips, images):
    base, slightly, _ = images
    results = {}
    for layout in (True, False):
        stlpips.channels_last = layout
        x = slightly.clone().requires_grad_(True)
        d = stlpips.prepare(base)(x)
        d.sum().backward()
        results[layout] = (d.detach(), x.grad)
    stlpips.channels_last = True
    assert torch.allclose(results[True][0], results[False][0], rtol=1e-5, atol=1e-7)
    assert torch.allclose(results[True][1], results[False][1], rtol=1e-4, atol=1e-8)


def test_bfloat16_trunk_gives_float32_features_close_to_the_reference_and_a_gradient(stlpips, images):
    base, slightly, strongly = images
    target = stlpips.batched_features(base)
    for image in (slightly, strongly):
        reference = stlpips.distance_to_features(image, target)
        x = image.clone().requires_grad_(True)
        fast = stlpips.distance_to_features(x, target, precision="bfloat16")
        fast.sum().backward()
        assert fast.dtype == torch.float32
        assert all(f.dtype == torch.float32 for f in stlpips.features(x, precision="bfloat16"))
        assert not torch.equal(fast.detach(), reference)
        assert torch.allclose(fast.detach(), reference, rtol=0.03)
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="float32"):
        stlpips.features(base, precision="float16")


def test_fast_pairwise_distance_is_the_package_forward(stlpips, images):
    base, slightly, strongly = images
    x, y = torch.cat([slightly, strongly, base]), torch.cat([base, base, strongly])
    reference = stlpips(x, y)
    for batch_size in (1, 2, 16):  # chunking must not mix pairs
        assert torch.allclose(stlpips.distance(x, y, batch_size=batch_size), reference, rtol=1e-5, atol=1e-7)
    assert reference[:3].mean() < reference[3:6].mean()  # the slight changes are closer than the strong ones


def test_distance_between_precomputed_features_is_the_pairwise_distance(stlpips, images):
    # edit_fidelity computes each image's features once and pairs them up: the same distances as `distance`
    base, slightly, strongly = images
    x, y = torch.cat([slightly, strongly, base]), torch.cat([base, base, strongly])
    whole = stlpips.features(x)
    for batch_size in (1, 2, 16):  # chunking must not mix images
        chunked = stlpips.batched_features(x, batch_size=batch_size)
        assert [f.shape for f in chunked] == [f.shape for f in whole] and not any(f.requires_grad for f in chunked)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(chunked, whole, strict=True))
    between = stlpips.distance_between(stlpips.batched_features(x), stlpips.batched_features(y))
    assert between.shape == (9,) and (between[:6] > 1e-3).all()
    assert torch.allclose(between, stlpips.distance(x, y), rtol=1e-5, atol=1e-7)
    assert torch.allclose(between, stlpips(x, y), rtol=1e-5, atol=1e-7)
    assert torch.allclose(stlpips.distance_to_features(x, stlpips.features(y)), between, rtol=1e-5, atol=1e-7)


def test_distances_of_a_batch_are_those_of_its_images(stlpips, images):
    # The inversion sums per-image losses; that is right only if no image influences another's distance.
    # Coupling would change values by O(1); float32 rounding of batched convolutions by ~1e-6.
    base, slightly, _ = images
    x = slightly.clone().requires_grad_(True)
    batched = stlpips(x, base)
    batched.sum().backward()
    for i in range(3):
        xi = slightly[i : i + 1].clone().requires_grad_(True)
        d = stlpips(xi, base[i : i + 1])
        d.sum().backward()
        assert torch.allclose(d, batched[i : i + 1], rtol=1e-4)
        assert torch.allclose(xi.grad, x.grad[i : i + 1], rtol=1e-3, atol=1e-4 * x.grad[i].abs().max().item())


def test_lpips_vgg_offline_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: the weights are not there

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PerceptualWeightsUnavailable, match=rf"vgg16_weights='/path/to/{VGG16_FILE}'.*stlpips-vgg"):
        build_perceptual("lpips-vgg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_perceptual("lpips-vgg", vgg16_weights=tmp_path / "missing.pth")


@pytest.mark.filterwarnings("ignore:.*(pretrained|weights).*:UserWarning")  # lpips 0.1.4 uses torchvision's old API
def test_lpips_vgg_loads_a_local_vgg16_file(tmp_path, images):
    import lpips

    # A torchvision-format file (keys 'features.<i>.weight/bias') with random values stands in for the
    # 528 MB ImageNet checkpoint; only the VGG trunk is read from it.
    trunk = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).net
    state = {f"features.{name.split('.', 1)[1]}": torch.randn_like(p) * 0.05 for name, p in trunk.named_parameters()}
    path = tmp_path / VGG16_FILE
    torch.save(state, path)
    net = LpipsVGG(vgg16_weights=path)
    assert torch.equal(net.model.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(getattr(net.model.net.slice5, "28").bias, state["features.28.bias"])
    base, slightly, _ = images
    assert net(base, base).abs().max() < 1e-6 and (net(base, slightly) > 0).all()
    assert not any(p.requires_grad for p in net.parameters())
    torch.save({"classifier.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="no tensor 'features.0.weight'"):
        LpipsVGG(vgg16_weights=tmp_path / "wrong.pth")


def test_stlpips_leaves_no_stand_in_modules_behind(stlpips):
    import importlib.util
    import sys

    from matplotlib.figure import Figure

    from fzplus.perceptual import _STLPIPS_UNUSED_IMPORTS

    for name in ("IPython", "torchsummary"):
        if importlib.util.find_spec(name) is None:  # absent here: the stand-in must be gone again
            assert name not in sys.modules
    for name in _STLPIPS_UNUSED_IMPORTS:  # installed ones (torchvision): the real module or none, never the stand-in
        assert name not in sys.modules or sys.modules[name].__spec__ is not None
    Figure(figsize=(1, 1))  # matplotlib probes sys.modules["IPython"].version_info when a canvas is made


def test_stlpips_built_without_random_init_holds_the_packages_weights(stlpips, images):
    plain = build_perceptual("stlpips-vgg", skip_random_init=False)
    fast, reference = stlpips.state_dict(), plain.state_dict()
    assert fast.keys() == reference.keys()
    assert all(torch.equal(fast[k], reference[k]) for k in reference)
    base, slightly, _ = images
    assert torch.equal(stlpips(slightly, base), plain(slightly, base))
    # the switch leaves torch's initialisers as they were
    from fzplus.perceptual import _INIT_FUNCTIONS

    assert all(getattr(torch.nn.init, name).__module__ == "torch.nn.init" for name in _INIT_FUNCTIONS)
    layer = torch.nn.Linear(8, 8)
    assert layer.weight.abs().sum() > 0 and layer.weight.std() > 0.05


def test_stand_in_fails_on_use_and_answers_protocol_probes_plainly():
    import subprocess
    import sys

    # a fresh interpreter, so that stlpips is imported before torchvision and holds the stand-in
    code = (
        "from fzplus.perceptual import build_perceptual\n"
        "build_perceptual('stlpips-vgg')\n"
        "import stlpips_pytorch.invariant_networks as networks\n"
        "assert not hasattr(networks.tv, '__wrapped__')\n"
        "networks.tv.vgg16()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (
        run.returncode != 0
        and "RuntimeError: torchvision.models is a stand-in installed by fzplus.perceptual" in run.stderr
    ), run.stderr[-2000:]
