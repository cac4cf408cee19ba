"""StyleGAN1: the generator's numerics and its split at F, and its three checkpoint formats (genforce, NVIDIA's
TensorFlow pickles, rosinality), on tiny random generators. The TensorFlow and rosinality layouts are checked
against reference forwards written here from the sources' formulas (networks_stylegan.py; rosinality model.py),
so that a wrong transpose or gain in a writer cannot hide behind the matching reader."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fzplus.generator
from conftest import make_tiny_generator
from fzplus.generator import BaseCode, CheckpointError, write_nvidia_pickle
from fzplus.generator.checkpoints_stylegan1 import (
    ROSINALITY_NOISE_SEED,
    read_rosinality_stylegan1,
    rosinality_stylegan1_state,
    rosinality_stylegan1_state_dict,
    write_rosinality_stylegan1_checkpoint,
)
from fzplus.generator.checkpoints_stylegan1_nvidia import (
    TFNetworkRecord,
    dump_tensorflow_snapshot,
    genforce_state,
    genforce_state_dict,
    is_tensorflow_pickle,
    read_genforce,
    read_tensorflow_pickle,
    tensorflow_snapshot,
    write_genforce_checkpoint,
    write_tensorflow_pickle,
)
from fzplus.generator.stylegan1 import StyleGAN1Generator, upsample_conv2d

DIM = 32  # z and w width of the tiny generators (rosinality has one code_dim for both)


def tiny_stylegan1(
    *, resolution: int = 16, seed: int = 0, variant: str = "nvidia", fused_scale: bool | str = "auto"
) -> StyleGAN1Generator:
    """A random StyleGAN1 with narrow channels and non-zero noise strengths and biases (every parameter matters)."""
    torch.manual_seed(seed)
    G = StyleGAN1Generator(
        resolution=resolution,
        z_dim=DIM,
        w_dim=DIM,
        channel_base=128,
        channel_max=16,
        mapping_layers=2,
        fused_scale=fused_scale,
        variant=variant,
    )
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.normal_(0.0, 0.2)
        G.synthesis.b4.const.normal_()  # NVIDIA initialises it to ones, where a bias before lrelu hardly shows
        G.mapping.w_avg.copy_(G.mapping(torch.randn(1024, DIM)).mean(0))
    return G.eval().requires_grad_(False)


def fixed_ws(G: StyleGAN1Generator, n: int = 3, *, seed: int = 1) -> torch.Tensor:
    """Per-layer distinct ws (a Z+ code), so that a layer reading the wrong ws entry shows."""
    return G.map(torch.randn(n, G.num_ws, G.z_dim, generator=torch.Generator().manual_seed(seed)))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def built(parsed) -> StyleGAN1Generator:
    """What load_generator does with a parsed checkpoint: build from config, strict load (w_avg from the file)."""
    G = StyleGAN1Generator(**parsed.config)
    state = dict(parsed.state_dict)
    state.setdefault("mapping.w_avg", G.mapping.w_avg)
    G.load_state_dict(state, strict=True)
    return G.eval().requires_grad_(False)


# ---- the generator ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "resolution, variant, fused_scale", [(16, "nvidia", "auto"), (32, "nvidia", True), (32, "rosinality", True)]
)
def test_synthesize_from_features_equals_synthesize_at_every_split(resolution, variant, fused_scale):
    G = tiny_stylegan1(resolution=resolution, variant=variant, fused_scale=fused_scale)
    ws = fixed_ws(G)
    full = G.synthesize(ws)
    assert full.shape == (3, 3, resolution, resolution) and full.std() > 0.1
    for at in G.synthesis.block_resolutions:
        base = G.features(ws, at=at)
        m = G.first_detail_layer(at)
        assert base.f.shape == (3, G.base_channels(at), at, at) and base.rgb is None
        assert max_diff(G.synthesize_from(base, ws), full) < 1e-6, f"split at {at}"
        assert max_diff(G.synthesize_from(base.f, ws[:, m:]), full) < 1e-6, f"detail code alone, split at {at}"
        scrambled = ws.clone()
        scrambled[:, :m] = torch.randn_like(scrambled[:, :m]) * 5
        assert torch.equal(G.synthesize_from(base.f, scrambled), G.synthesize_from(base.f, ws))


def test_split_follows_the_authors_convention():
    # BDInvert's StyleGAN1 base code at s replaces the activation of layer 2 log2(s) - 4 before its AdaIN
    assert [tiny_stylegan1(resolution=32).first_detail_layer(s) for s in (4, 8, 16, 32)] == [0, 2, 4, 6]
    big = {"resolution": 1024, "channels": {2**i: 1 for i in range(2, 11)}, "mapping_layers": 1}
    assert StyleGAN1Generator(**big).num_ws == 18 and StyleGAN1Generator(**{**big, "resolution": 256}).num_ws == 14
    # ws[M] styles f itself: changing it changes the image made from f, changing ws[M - 1] does not
    G = tiny_stylegan1()
    ws = fixed_ws(G)
    f = G.features(ws, at=8).f
    m = G.first_detail_layer(8)
    moved = ws.clone()
    moved[:, m] += 1.0
    assert max_diff(G.synthesize_from(f, moved), G.synthesize_from(f, ws)) > 1e-2
    moved = ws.clone()
    moved[:, m - 1] += 1.0
    assert torch.equal(G.synthesize_from(f, moved), G.synthesize_from(f, ws))
    # f is the pre-normalisation activation: rescaling a channel of f does not change the image (instance norm)
    scaled = f * torch.linspace(0.5, 2.0, f.shape[1])[None, :, None, None]
    assert max_diff(G.synthesize_from(scaled, ws), G.synthesize_from(f, ws)) < 1e-4


def test_ffhq_1024_has_nvidia_s_parameter_count():
    # NVlabs/stylegan README (pretrained_example.py's Gs.print_layers): Total 26219627 trainable parameters, which
    # include the 8 lower-resolution ToRGBs of progressive growing (3 C + 3 each) that this generator drops
    G = StyleGAN1Generator(resolution=1024, mapping_layers=8)
    lower_torgbs = sum(3 * c + 3 for r, c in G.synthesis.channels.items() if r < 1024)
    assert sum(p.numel() for p in G.parameters()) + lower_torgbs == 26_219_627


def test_inversion_gets_gradients_for_the_base_and_the_detail_code():
    G = tiny_stylegan1()
    ws = fixed_ws(G, 2).requires_grad_()
    f = G.features(ws.detach(), at=8).f.requires_grad_()
    G.synthesize_from(f, ws).square().mean().backward()
    m = G.first_detail_layer(8)
    assert f.grad.abs().sum() > 0 and ws.grad[:, m:].abs().sum(dim=2).min() > 0
    assert torch.equal(ws.grad[:, :m], torch.zeros_like(ws.grad[:, :m]))


def test_adain_styles_path_equals_ws_path():
    G = tiny_stylegan1()
    ws = fixed_ws(G)
    styles = G.styles(ws)
    assert len(styles) == G.num_ws == len(G.synthesis.layer_specs)
    assert (
        [s.shape[1] for s in styles]
        == G.synthesis.style_dims
        == [2 * G.synthesis.channels[s.block] for s in G.synthesis.layer_specs]
    )
    assert torch.equal(G.synthesize(styles=styles), G.synthesize(ws))
    base = G.features(styles=styles, at=8)
    m = G.first_detail_layer(8)
    assert max_diff(G.synthesize_from(base, styles=styles), G.synthesize(ws)) < 1e-6
    assert max_diff(G.synthesize_from(base, styles=styles[m:]), G.synthesize(ws)) < 1e-6


def test_truncation_moves_ws_toward_w_avg():
    G = tiny_stylegan1()
    z = torch.randn(4, DIM, generator=torch.Generator().manual_seed(2))
    ws = G.map(z)
    assert G.truncate(ws, psi=1.0) is ws
    t = G.map(z, truncation_psi=0.7, truncation_cutoff=4)  # NVIDIA's psi, on the first 4 of 6 layers
    before, after = (ws - G.w_avg).norm(dim=2), (t - G.w_avg).norm(dim=2)
    assert torch.allclose(after[:, :4], 0.7 * before[:, :4], rtol=1e-5)
    assert torch.equal(t[:, 4:], ws[:, 4:])
    assert torch.allclose(G.truncate(ws, psi=0.0), G.w_avg.expand_as(ws), atol=1e-6)


@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_images_of_a_batch_equal_images_rendered_one_by_one(noise_mode):
    G = tiny_stylegan1(fused_scale=True)
    G.noise_mode = noise_mode
    ws = fixed_ws(G, 4)
    batch = G.synthesize(ws)
    for i in range(4):
        assert max_diff(G.synthesize(ws[i : i + 1]), batch[i : i + 1]) < 1e-5 * max(1.0, batch.abs().max().item())


def test_noise_modes():
    G = tiny_stylegan1()
    ws = fixed_ws(G, 2)
    const = G.synthesize(ws)
    assert torch.equal(G.synthesize(ws), const)
    G.noise_mode = "random"
    torch.manual_seed(0)
    first, second = G.synthesize(ws), G.synthesize(ws)
    assert max_diff(first, second) > 1e-3 and max_diff(first, const) > 1e-3
    same_w = G.synthesize(ws[:1].expand(2, -1, -1))
    assert max_diff(same_w[0], same_w[1]) > 1e-3  # a noise draw per image
    G.noise_mode = "none"
    without = G.synthesize(ws)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
    G.noise_mode = "const"
    assert max_diff(without, const) > 1e-3 and max_diff(G.synthesize(ws), without) < 1e-6
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G.noise_mode = "sometimes"


def test_fused_upsampling_is_a_transposed_conv_of_the_flipped_kernel():
    # NVIDIA's fused upscale2d_conv2d equals nearest + conv with the kernel flipped, not the same kernel: which
    # layers are fused is part of the architecture (config fused_scale), not an implementation detail
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    fused = upsample_conv2d(x, w, fused=True)
    assert max_diff(fused, upsample_conv2d(x, w.flip([2, 3]), fused=False)) < 1e-5
    assert max_diff(fused, upsample_conv2d(x, w, fused=False)) > 1e-1
    G_fused, G_plain = tiny_stylegan1(fused_scale=True), tiny_stylegan1(fused_scale=False)
    G_plain.load_state_dict(G_fused.state_dict())
    ws = fixed_ws(G_fused)
    assert max_diff(G_fused.synthesize(ws), G_plain.synthesize(ws)) > 1e-2
    with torch.no_grad():
        for r in G_plain.synthesis.block_resolutions[1:]:
            getattr(G_plain.synthesis, f"b{r}").conv0.weight.copy_(
                getattr(G_fused.synthesis, f"b{r}").conv0.weight.flip([2, 3])
            )
    assert max_diff(G_fused.synthesize(ws), G_plain.synthesize(ws)) < 1e-5
    auto = StyleGAN1Generator(resolution=128, channels={2**i: 1 for i in range(2, 8)}, mapping_layers=1).synthesis
    assert [auto.layer(s).fused for s in auto.layer_specs if s.name == "conv0"] == [False] * 5 + [True]  # from 128 px


def test_interface_gaps_give_clear_errors():
    G = tiny_stylegan1()
    ws = fixed_ws(G, 1)
    assert G.fused_modconv is False
    G.fused_modconv = False
    with pytest.raises(ValueError, match="no modulated convolution"):
        G.fused_modconv = True
    base = G.features(ws, at=8)
    with pytest.raises(ValueError, match="no RGB skip"):
        G.synthesize_from(BaseCode(base.f, torch.zeros(1, 3, 4, 4)), ws)
    with pytest.raises(ValueError, match="split size must be one of"):
        G.features(ws, at=12)
    with pytest.raises(AssertionError, match=r"ws must be \[N, 6, 32\]"):
        G.synthesize(ws[:, :5])
    with pytest.raises(ValueError, match="variant"):
        StyleGAN1Generator(resolution=8, variant="tf")
    with pytest.raises(ValueError, match="architecture"):
        StyleGAN1Generator(architecture="stylegan2")
    assert StyleGAN1Generator(**G.config).config == G.config


# ---- reference forwards written from the sources -----------------------------------------------------
def _conv_hwio(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """TensorFlow conv2d, 'SAME', of an HWIO kernel, as the explicit correlation sum over patches."""
    n, _, h, wd = x.shape
    patches = F.unfold(x, w.shape[0], padding=w.shape[0] // 2)  # [N, (I, ky, kx), H W]
    out = patches.transpose(1, 2) @ w.permute(2, 0, 1, 3).reshape(-1, w.shape[3])
    return out.transpose(1, 2).reshape(n, w.shape[3], h, wd)


def _conv_transpose_stride2(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """TensorFlow conv2d_transpose, 'SAME', stride 2, kernel [4, 4, out, in]: x[i, j] k[a, b] lands at
    (2i + a - 1, 2j + b - 1)."""
    n, _, h, w = x.shape
    out = x.new_zeros(n, k.shape[2], 2 * h + 2, 2 * w + 2)
    for a in range(4):
        for b in range(4):
            out[:, :, a : a + 2 * h : 2, b : b + 2 * w : 2] += torch.einsum("nihw,oi->nohw", x, k[a, b])
    return out[:, :, 1 : 2 * h + 1, 1 : 2 * w + 1]


def tensorflow_reference(snapshot, z: torch.Tensor, *, psi: float, cutoff: int) -> torch.Tensor:
    """networks_stylegan.py G_style (lod 0, randomize_noise=False) on the snapshot's variables, in float64."""
    Gs = snapshot[2]
    v = {
        net: {
            name: torch.as_tensor(np.asarray(value), dtype=torch.float64) for name, value in record.state["variables"]
        }
        for net, record in (("G", Gs), ("M", Gs.component("mapping")), ("S", Gs.component("synthesis")))
    }
    kwargs = Gs.state["static_kwargs"]
    lrmul = kwargs["mapping_lrmul"]

    def runtime(w, gain, lr=1.0):  # get_weight: he_std = gain / sqrt(fan_in), fan_in = prod(shape[:-1])
        return w * gain / math.sqrt(np.prod(w.shape[:-1])) * lr

    lrelu = lambda x: torch.maximum(x, 0.2 * x)
    x = z.double()
    x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)
    i = 0
    while f"Dense{i}/weight" in v["M"]:
        x = lrelu(x @ runtime(v["M"][f"Dense{i}/weight"], math.sqrt(2), lrmul) + v["M"][f"Dense{i}/bias"] * lrmul)
        i += 1
    num_layers = sum(name.startswith("noise") for name in v["S"])
    dl = x[:, None].repeat(1, num_layers, 1)
    coefs = torch.where(torch.arange(num_layers) < cutoff, psi, 1.0).double()[None, :, None]
    dl = v["G"]["dlatent_avg"] + (dl - v["G"]["dlatent_avg"]) * coefs
    S = v["S"]

    def epilogue(x, scope, index):
        x = x + S[f"noise{index}"] * S[f"{scope}/Noise/weight"].view(1, -1, 1, 1)
        x = lrelu(x + S[f"{scope}/bias"].view(1, -1, 1, 1))
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + 1e-8)
        style = dl[:, index] @ runtime(S[f"{scope}/StyleMod/weight"], 1.0) + S[f"{scope}/StyleMod/bias"]
        style = style.view(-1, 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]

    blur = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    blur = torch.outer(blur, blur) / 16
    x = epilogue(S["4x4/Const/const"].repeat(len(z), 1, 1, 1), "4x4/Const", 0)
    x = epilogue(_conv_hwio(x, runtime(S["4x4/Conv/weight"], math.sqrt(2))), "4x4/Conv", 1)
    res, index = 8, 2
    while f"{res}x{res}/Conv0_up/weight" in S:
        w = runtime(S[f"{res}x{res}/Conv0_up/weight"], math.sqrt(2))
        if kwargs["fused_scale"] is True or (kwargs["fused_scale"] == "auto" and res >= 128):
            k = F.pad(w.permute(2, 3, 0, 1), [1, 1, 1, 1]).permute(2, 3, 0, 1)  # spatially padded [5, 5, in, out]
            k = (k[1:, 1:] + k[:-1, 1:] + k[1:, :-1] + k[:-1, :-1]).permute(0, 1, 3, 2)  # [4, 4, out, in]
            x = _conv_transpose_stride2(x, k)
        else:
            x = _conv_hwio(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3), w)
        x = F.conv2d(x, blur.expand(x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])
        x = epilogue(x, f"{res}x{res}/Conv0_up", index)
        x = epilogue(
            _conv_hwio(x, runtime(S[f"{res}x{res}/Conv1/weight"], math.sqrt(2))), f"{res}x{res}/Conv1", index + 1
        )
        res, index = res * 2, index + 2
    return _conv_hwio(x, runtime(S["ToRGB_lod0/weight"], 1.0)) + S["ToRGB_lod0/bias"].view(1, -1, 1, 1)


def rosinality_reference(sd: dict, z: torch.Tensor, noise: list[torch.Tensor], *, step: int) -> torch.Tensor:
    """style-based-gan-pytorch StyledGenerator(z, noise, step, alpha=1) from model.py's formulas."""

    def equal(w):  # EqualLR: weight * sqrt(2 / (size(1) * weight[0][0].numel()))
        return w * math.sqrt(2 / (w.shape[1] * w[0][0].numel()))

    def adain(x, key, w):
        gamma, beta = F.linear(w, equal(sd[f"{key}.style.linear.weight_orig"]), sd[f"{key}.style.linear.bias"]).chunk(
            2, 1
        )
        return gamma[:, :, None, None] * F.instance_norm(x) + beta[:, :, None, None]

    def blur(x, key):
        return F.conv2d(x, sd[f"{key}.weight"], padding=1, groups=x.shape[1])

    w = z / torch.sqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.linear.weight_orig" in sd:
        w = F.leaky_relu(F.linear(w, equal(sd[f"style.{i}.linear.weight_orig"]), sd[f"style.{i}.linear.bias"]), 0.2)
        i += 2
    for b in range(step + 1):
        p = f"generator.progression.{b}"
        if b == 0:
            out = sd[f"{p}.conv1.input"].repeat(len(z), 1, 1, 1)
        elif f"{p}.conv1.0.weight" in sd:  # FusedUpsample, then Blur
            weight = F.pad(
                sd[f"{p}.conv1.0.weight"] * math.sqrt(2 / (sd[f"{p}.conv1.0.weight"][:, 0].numel())), [1, 1, 1, 1]
            )
            weight = (weight[:, :, 1:, 1:] + weight[:, :, :-1, 1:] + weight[:, :, 1:, :-1] + weight[:, :, :-1, :-1]) / 4
            out = blur(F.conv_transpose2d(out, weight, sd[f"{p}.conv1.0.bias"], stride=2, padding=1), f"{p}.conv1.1")
        else:  # Upsample(nearest), EqualConv2d (bias included), Blur
            up = F.interpolate(out, scale_factor=2, mode="nearest")
            out = F.conv2d(up, equal(sd[f"{p}.conv1.1.conv.weight_orig"]), sd[f"{p}.conv1.1.conv.bias"], padding=1)
            out = blur(out, f"{p}.conv1.2")
        out = adain(F.leaky_relu(out + equal(sd[f"{p}.noise1.weight_orig"]) * noise[b], 0.2), f"{p}.adain1", w)
        out = F.conv2d(out, equal(sd[f"{p}.conv2.conv.weight_orig"]), sd[f"{p}.conv2.conv.bias"], padding=1)
        out = adain(F.leaky_relu(out + equal(sd[f"{p}.noise2.weight_orig"]) * noise[b], 0.2), f"{p}.adain2", w)
    return F.conv2d(
        out, equal(sd[f"generator.to_rgb.{step}.conv.weight_orig"]), sd[f"generator.to_rgb.{step}.conv.bias"]
    )


# ---- checkpoint formats ------------------------------------------------------------------------------
@pytest.mark.parametrize("fused_scale", ["auto", True])
def test_tensorflow_layout_computes_networks_stylegan_formulas(fused_scale):
    G = tiny_stylegan1(resolution=16, fused_scale=fused_scale)
    snapshot = tensorflow_snapshot(G)
    z = torch.randn(2, DIM, generator=torch.Generator().manual_seed(3))
    reference = tensorflow_reference(snapshot, z, psi=0.7, cutoff=4)
    assert max_diff(reference.float(), G(z, truncation_psi=0.7, truncation_cutoff=4)) < 1e-4


def test_tensorflow_pickle_reads_back_the_same_generator(tmp_path):
    G = tiny_stylegan1(resolution=32, fused_scale=True)
    path = tmp_path / "karras2019stylegan-tiny.pkl"
    write_tensorflow_pickle(G, path)
    assert is_tensorflow_pickle(path)
    assert path.read_bytes()[:2] == b"\x80\x04" and b"dnnlib.tflib.network" in path.read_bytes()[:200]
    parsed = read_tensorflow_pickle(path)
    assert parsed.config == G.config and parsed.metadata["format"] == "nvidia-tensorflow-stylegan1"
    loaded = built(parsed)
    ws = fixed_ws(G)
    assert torch.equal(loaded.synthesize(ws), G.synthesize(ws))
    assert torch.equal(loaded.w_avg, G.w_avg)


def test_genforce_checkpoint_reads_back_the_same_generator(tmp_path):
    G = tiny_stylegan1(resolution=16)
    path = tmp_path / "stylegan_tiny16.pth"
    write_genforce_checkpoint(G, path)
    content = torch.load(path, weights_only=True)
    smooth = content["generator_smooth"]
    # genforce's names and shapes (models/stylegan_generator.py)
    shapes = {k: tuple(v.shape) for k, v in smooth.items()}
    assert "synthesis.layer0.weight" not in shapes and shapes["synthesis.layer0.const"] == (1, 16, 4, 4)
    assert shapes["synthesis.layer2.weight"] == (16, 16, 3, 3) and shapes["synthesis.layer2.blur.kernel"] == (
        16,
        1,
        3,
        3,
    )
    assert shapes["synthesis.layer5.style.weight"] == (16, DIM) and shapes["synthesis.layer5.apply_noise.noise"] == (
        1,
        1,
        16,
        16,
    )
    assert shapes["synthesis.output0.weight"] == (3, 16, 1, 1) and shapes["truncation.w_avg"] == (DIM,)
    assert genforce_state(content).keys() == smooth.keys() and rosinality_stylegan1_state(content) is None
    ws = fixed_ws(G)
    runner = {"models": {"generator_smooth": {f"module.{k}": v for k, v in smooth.items()}}, "optimizers": {}}
    for variant in (content, smooth, runner):
        assert torch.equal(built(read_genforce(variant, path)).synthesize(ws), G.synthesize(ws))
    # generator_smooth (the moving average) wins over generator, as in the authors' scripts
    content["generator"] = genforce_state_dict(tiny_stylegan1(resolution=16, seed=9))
    assert torch.equal(built(read_genforce(content, path)).synthesize(ws), G.synthesize(ws))


@pytest.mark.parametrize("fused_scale", ["auto", True])
def test_rosinality_layout_computes_style_based_gan_formulas(fused_scale):
    G = tiny_stylegan1(resolution=16, variant="rosinality", fused_scale=fused_scale)
    with torch.no_grad():  # rosinality feeds one noise map to both layers of a block
        for r in G.synthesis.block_resolutions:
            block = getattr(G.synthesis, f"b{r}")
            block.conv1.noise_const.copy_(block.conv0.noise_const)
    sd = rosinality_stylegan1_state_dict(G)
    noise = [getattr(G.synthesis, f"b{r}").conv0.noise_const[None, None] for r in G.synthesis.block_resolutions]
    z = torch.randn(2, DIM, generator=torch.Generator().manual_seed(4))
    assert max_diff(rosinality_reference(sd, z, noise, step=2), G(z)) < 1e-4


def test_rosinality_checkpoint_reads_back_the_same_generator(tmp_path):
    G = tiny_stylegan1(resolution=16, variant="rosinality", fused_scale=True)
    path = tmp_path / "train_step-4.model"
    write_rosinality_stylegan1_checkpoint(G, path, untrained_blocks=2)
    content = torch.load(path, weights_only=True)
    assert rosinality_stylegan1_state(content) is not None and genforce_state(content) is None
    assert content["g_running"]["generator.progression.4.adain2.style.linear.bias"].shape == (16,)  # a 64 px block
    parsed = read_rosinality_stylegan1(content, path)  # the resolution is inferred from the blocks that trained
    assert parsed.config["resolution"] == 16 and parsed.metadata["trained_blocks"] == [4, 8, 16]
    assert parsed.config["fused_scale"] is True and "mapping.w_avg" not in parsed.state_dict
    loaded = built(parsed)
    noise = torch.Generator().manual_seed(ROSINALITY_NOISE_SEED)
    for r in G.synthesis.block_resolutions:  # drawn, one map per block for both layers
        block = getattr(loaded.synthesis, f"b{r}")
        assert torch.equal(block.conv0.noise_const, torch.randn(r, r, generator=noise))
        assert torch.equal(block.conv1.noise_const, block.conv0.noise_const)
    ws = fixed_ws(G)
    with torch.no_grad():  # the file holds no noise maps: with G's, loaded renders G's images
        for name, buffer in loaded.named_buffers():
            buffer.copy_(G.get_buffer(name))
    assert max_diff(loaded.synthesize(ws), G.synthesize(ws)) < 1e-4  # float32 rounding of the rescaled tensors
    with pytest.raises(CheckpointError, match="128 px is not one"):
        read_rosinality_stylegan1(content, path, resolution=128)
    with pytest.raises(CheckpointError, match=r"fuses upsampling at \[8, 16\] px"):  # its unfused 32, 64 px blocks
        read_rosinality_stylegan1(content, path, resolution=64)
    write_rosinality_stylegan1_checkpoint(tiny_stylegan1(resolution=16, variant="rosinality"), path, untrained_blocks=2)
    bigger = read_rosinality_stylegan1(torch.load(path, weights_only=True), path, resolution=64)
    assert bigger.config["resolution"] == 64 and bigger.metadata["resolution_source"] == "given"
    assert built(bigger).synthesize(fixed_ws(built(bigger))).shape == (3, 3, 64, 64)


# ---- refusals -----------------------------------------------------------------------------------------
class _RunsCommand:
    """Pickles as a call of os.system: what a malicious checkpoint does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _UnexpectedObject:
    """A plain object of this test module: a global no TensorFlow StyleGAN pickle references."""


def test_malicious_tensorflow_pickles_are_refused_with_nothing_run(tmp_path):
    G = tiny_stylegan1(resolution=8)
    sentinel = tmp_path / "SENTINEL"
    for name, inject, phrase in [
        (
            "system.pkl",
            lambda s: s[2].state["variables"].append(("lod", _RunsCommand(f"touch {sentinel}"))),
            r"system'",
        ),
        ("global.pkl", lambda s: s[2].state["static_kwargs"].update(extra=_UnexpectedObject()), "_UnexpectedObject"),
    ]:
        snapshot = tensorflow_snapshot(G)
        inject(snapshot)
        path = tmp_path / name
        dump_tensorflow_snapshot(snapshot, path)
        assert is_tensorflow_pickle(path)
        with pytest.raises(CheckpointError, match=f"{phrase}.*refused without running it") as info:
            read_tensorflow_pickle(path)
        assert str(path) in str(info.value)
        assert not sentinel.exists(), "a pickled os.system call was executed"
    # NVIDIA's loader exec()s build_module_src; here it stays a string
    snapshot = tensorflow_snapshot(G)
    snapshot[2].component("synthesis").state["build_module_src"] = f"import os\nos.system('touch {sentinel}')\n"
    dump_tensorflow_snapshot(snapshot, tmp_path / "source.pkl")
    ws = fixed_ws(G)
    assert torch.equal(built(read_tensorflow_pickle(tmp_path / "source.pkl")).synthesize(ws), G.synthesize(ws))
    assert not sentinel.exists()


def test_tensorflow_pickle_sniffing(tmp_path):
    G = tiny_stylegan1(resolution=8)
    write_nvidia_pickle(make_tiny_generator(resolution=8), tmp_path / "stylegan2.pkl")
    torch.save(genforce_state_dict(G), tmp_path / "genforce.pth")
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    (tmp_path / "old.pkl").write_bytes(b"\x80\x03cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01.")
    assert is_tensorflow_pickle(tmp_path / "old.pkl")
    for name in ("stylegan2.pkl", "genforce.pth", "random.bin"):
        assert not is_tensorflow_pickle(tmp_path / name), name
    with pytest.raises(CheckpointError, match=r"not a snapshot \(G, D, Gs\).*legacy\.py"):
        read_tensorflow_pickle(tmp_path / "old.pkl")


def _set_variable(record: TFNetworkRecord, name: str, value) -> None:
    variables = record.state["variables"]
    variables[[n for n, _ in variables].index(name)] = (name, value)


@pytest.mark.parametrize(
    "edit, phrase",
    [
        (lambda s: s[2].state.update(build_func_name="G_main"), r"built by \('G_main'.*legacy\.py"),
        (lambda s: s[2].component("synthesis").state["static_kwargs"].update(use_noise=False), "use_noise=False"),
        (lambda s: s[2].component("synthesis").state["variables"].pop(3), "lacks the TensorFlow StyleGAN tensor"),
        (
            lambda s: s[2].component("mapping").state["variables"].append(("LabelConcat/weight", np.zeros((1, 2)))),
            r"does not: \['G_mapping/LabelConcat/weight'\]",
        ),
        (lambda s: _set_variable(s[2], "lod", np.float32(1)), r"while growing \(G_style/lod = 1\.0\)"),
        (
            lambda s: _set_variable(s[2].component("synthesis"), "4x4/Const/const", np.zeros((1, 9, 4, 4), "f4")),
            r"'G_synthesis/4x4/Const/const' of shape \(1, 9, 4, 4\), expected \(1, 16, 4, 4\)",
        ),
    ],
)
def test_unsupported_tensorflow_generators_are_refused_clearly(tmp_path, edit, phrase):
    path = tmp_path / "edited.pkl"
    snapshot = tensorflow_snapshot(tiny_stylegan1(resolution=8))
    edit(snapshot)
    dump_tensorflow_snapshot(snapshot, path)
    with pytest.raises(CheckpointError, match=phrase) as info:
        read_tensorflow_pickle(path)
    assert str(path) in str(info.value)


def test_torch_format_errors_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "g.pth"
    state = genforce_state_dict(tiny_stylegan1(resolution=8))
    missing = {k: v for k, v in state.items() if k != "synthesis.layer3.apply_noise.weight"}
    phrase = r"g\.pth: lacks the genforce StyleGAN generator tensor 'synthesis\.layer3\.apply_noise\.weight'"
    with pytest.raises(CheckpointError, match=phrase):
        read_genforce(missing, path)
    with pytest.raises(CheckpointError, match=r"generator does not: \['mapping\.label_weight'\]"):
        read_genforce({**state, "mapping.label_weight": torch.zeros(2, DIM)}, path)
    with pytest.raises(CheckpointError, match=r"saved while growing \(synthesis\.lod = 1\.0\)"):
        read_genforce({**state, "synthesis.lod": torch.tensor(1.0)}, path)
    with pytest.raises(CheckpointError, match=r"'synthesis\.layer2\.blur\.kernel' other than the \[1, 2, 1\] blur"):
        read_genforce({**state, "synthesis.layer2.blur.kernel": torch.ones(16, 1, 3, 3) / 9}, path)
    with pytest.raises(CheckpointError, match=r"no genforce StyleGAN1 generator \(it is a StyleGAN2\)"):
        read_genforce({**state, "synthesis.early_layer.const": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="no StyledGenerator state"):
        read_rosinality_stylegan1(state, path)
    with pytest.raises(ValueError, match="cannot write as genforce"):
        genforce_state_dict(tiny_stylegan1(resolution=8, fused_scale=True))
    with pytest.raises(ValueError, match="rosinality StyledGenerator"):
        rosinality_stylegan1_state_dict(tiny_stylegan1(resolution=8))
    with pytest.raises(ValueError, match="TensorFlow"):
        tensorflow_snapshot(tiny_stylegan1(resolution=8, variant="rosinality"))
    assert isinstance(pickle.loads(pickle.dumps(TFNetworkRecord({"name": "x"}))), TFNetworkRecord)


# ---- through load_generator / save_generator (once fzplus.generator dispatches StyleGAN1 files) ----------------
integrated = pytest.mark.skipif(
    not hasattr(fzplus.generator, "StyleGAN1Generator"), reason="StyleGAN1 is not yet dispatched by load_generator"
)


@integrated
def test_load_generator_reads_every_stylegan1_format(tmp_path):
    from fzplus.generator import load_generator, save_generator

    G, G_rosinality = (
        tiny_stylegan1(resolution=16, fused_scale=True),
        tiny_stylegan1(resolution=16, variant="rosinality"),
    )
    write_tensorflow_pickle(G, tmp_path / "karras2019stylegan-tiny.pkl")
    write_genforce_checkpoint(tiny_stylegan1(resolution=16), tmp_path / "stylegan_tiny.pth")
    write_rosinality_stylegan1_checkpoint(G_rosinality, tmp_path / "train_step-4.model")
    save_generator(G, tmp_path / "own.pt")
    ws = fixed_ws(G)
    for name, source in [("karras2019stylegan-tiny.pkl", G), ("stylegan_tiny.pth", tiny_stylegan1(resolution=16))]:
        loaded = load_generator(tmp_path / name)
        assert isinstance(loaded, StyleGAN1Generator) and torch.equal(loaded.synthesize(ws), source.synthesize(ws))
    with pytest.warns(UserWarning, match="stores no w_avg"):
        loaded = load_generator(tmp_path / "train_step-4.model")
    assert loaded.config == G_rosinality.config and loaded.checkpoint_metadata["format"] == "rosinality-stylegan1"
    own = load_generator(tmp_path / "own.pt")
    assert own.config == G.config and torch.equal(own.synthesize(ws), G.synthesize(ws))
