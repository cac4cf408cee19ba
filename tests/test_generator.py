"""Numerical identities of the StyleGAN2 generator and its split at the base code F."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_generator
from fzplus.generator import BaseCode, Generator
from fzplus.generator.ops import fir_filter_2d, modulated_conv2d, upsample2d


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_synthesize_from_features_equals_synthesize(resolution):
    G = make_tiny_generator(resolution=resolution, seed=resolution)
    ws = G.map(torch.randn(3, 512, generator=torch.Generator().manual_seed(1)))
    full = G.synthesize(ws)
    for at in G.synthesis.block_resolutions:
        base = G.features(ws, at=at)
        assert base.f.shape == (3, G.base_channels(at), at, at)
        assert (base.rgb is None) == (at == 4)
        assert (G.synthesize_from(base, ws) - full).abs().max().item() < 1e-5, f"split at {at}"


def test_detail_layer_index_follows_authors_convention():
    G = Generator(resolution=1024, channel_base=8192, channel_max=8, mapping_layers=1)
    assert G.num_ws == 18
    # FFHQ-1024 split at 16x16: ws[0..3] are consumed by f, detail codes are ws[4:] (14 of them).
    assert G.first_detail_layer(16) == 4
    assert [G.first_detail_layer(s) for s in (4, 8, 32)] == [1, 2, 6]
    assert make_tiny_generator(resolution=64).num_ws == 10


def test_codes_before_the_split_do_not_matter_and_tail_equals_full(tiny_generator):
    G = tiny_generator
    ws = G.map(torch.randn(2, 512))
    m = G.first_detail_layer(16)
    f = G.features(ws, at=16).f
    ws_other = ws.clone()
    ws_other[:, :m] = torch.randn_like(ws_other[:, :m]) * 5
    a = G.synthesize_from(f, ws)
    assert torch.equal(a, G.synthesize_from(f, ws_other))
    assert torch.equal(a, G.synthesize_from(f, ws[:, m:]))


def test_bare_f_restarts_the_rgb_skip(tiny_generator):
    G = tiny_generator
    ws = G.map(torch.randn(2, 512))
    base = G.features(ws, at=16)
    restarted = G.synthesize_from(base.f, ws)
    zero_skip = G.synthesize_from(BaseCode(base.f, torch.zeros_like(base.rgb)), ws)
    assert (restarted - zero_skip).abs().max().item() < 1e-6
    # and the dropped low-resolution RGB really changes the image
    assert (restarted - G.synthesize_from(base, ws)).abs().max().item() > 1e-3


def test_styles_path_equals_ws_path(tiny_generator):
    G = tiny_generator
    ws = G.map(torch.randn(2, 512))
    styles = G.styles(ws)
    assert len(styles) == len(G.synthesis.layer_specs) == 2 + 3 * (len(G.synthesis.block_resolutions) - 1)
    assert [s.shape[1] for s in styles] == G.synthesis.style_dims
    assert torch.equal(G.synthesize(styles=styles), G.synthesize(ws))
    base = G.features(styles=styles, at=8)
    assert (G.synthesize_from(base, styles=styles) - G.synthesize(ws)).abs().max().item() < 1e-5


def test_truncation(tiny_generator):
    G = tiny_generator
    z = torch.randn(4, 512)
    ws = G.map(z)
    assert torch.equal(G.map(z, truncation_psi=1.0, truncation_cutoff=3), ws)
    t = G.map(z, truncation_psi=0.0, truncation_cutoff=3)
    assert torch.allclose(t[:, :3], G.w_avg.expand(4, 3, -1), atol=1e-6)
    assert torch.equal(t[:, 3:], ws[:, 3:])
    half = G.truncate(ws, psi=0.5)
    assert torch.allclose(half, G.w_avg + 0.5 * (ws - G.w_avg), atol=1e-6)  # float32 ulps


def test_z_plus_with_equal_codes_equals_z(tiny_generator):
    G = tiny_generator
    z = torch.randn(2, 512)
    # a batch of N*num_ws rows through the mapping reorders float sums: ulps of |w| ~ 5
    assert torch.allclose(G.map(z[:, None].repeat(1, G.num_ws, 1)), G.map(z), atol=1e-5)


def test_batch_is_independent(tiny_generator):
    G = tiny_generator
    ws = G.map(torch.randn(3, 512))
    batch = G.synthesize(ws)
    for i in range(3):
        assert (G.synthesize(ws[i : i + 1]) - batch[i : i + 1]).abs().max().item() < 1e-5


def test_fused_reference_path_matches_fast_path(tiny_generator):
    G = tiny_generator
    ws = G.map(torch.randn(2, 512))
    fast = G.synthesize(ws)
    G.fused_modconv = True
    try:
        ref = G.synthesize(ws)
    finally:
        G.fused_modconv = False
    assert (fast - ref).abs().max().item() < 1e-4 * max(1.0, fast.abs().max().item())


def test_modulated_conv_demodulation_normalises_output_weights():
    torch.manual_seed(0)
    weight, styles = torch.randn(5, 4, 3, 3), torch.rand(2, 4) + 0.5
    # an impulse input reads out the effective per-sample weights; demodulated they have unit L2 norm
    x = torch.zeros(2, 4, 7, 7)
    for i in range(4):
        x_i = x.clone()
        x_i[:, i, 3, 3] = 1.0
        y = modulated_conv2d(x_i, weight, styles)
        w_eff = weight[None] * styles[:, None, :, None, None]
        w_eff = w_eff / w_eff.square().sum(dim=[2, 3, 4], keepdim=True).sqrt()
        assert torch.allclose(y[:, :, 2:5, 2:5], w_eff[:, :, i].flip([2, 3]), atol=1e-6)


def test_upsample_preserves_constants_and_doubles_size():
    x = torch.full((1, 3, 8, 8), 0.7)
    y = upsample2d(x, fir_filter_2d())
    assert y.shape == (1, 3, 16, 16)
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 0.7), atol=1e-6)


def test_bad_inputs_give_clear_errors(tiny_generator):
    G = tiny_generator
    with pytest.raises(AssertionError, match=r"ws must be \[N, 8, 512\]"):
        G.synthesize(torch.randn(2, 7, 512))
    with pytest.raises(ValueError, match="split size must be one of"):
        G.features(G.map(torch.randn(1, 512)), at=12)
    with pytest.raises(AssertionError, match="z must be"):
        G.map(torch.randn(2, 100))
    with pytest.raises(ValueError, match="noise_mode"):
        G.noise_mode = "sometimes"


def test_zero_channel_width_is_rejected():
    with pytest.raises(ValueError, match="channel widths must be >= 1"):
        Generator(resolution=1024, channel_base=256, channel_max=8)
