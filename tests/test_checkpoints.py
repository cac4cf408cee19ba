"""Generator checkpoints: exact round trips through NVIDIA pickles, rosinality .pt files and the own format,
rosinality's numerics on the converted tensors, and clear, safe refusals of everything else."""

from __future__ import annotations

import argparse
import copy
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_tiny_generator
from fzplus.generator import CheckpointError, load_generator, read_checkpoint_metadata, save_generator
from fzplus.generator.checkpoints import W_AVG_SAMPLES
from fzplus.generator.checkpoints_nvidia import dump_nvidia_snapshot, nvidia_snapshot, write_nvidia_pickle
from fzplus.generator.checkpoints_rosinality import rosinality_state_dict, write_rosinality_checkpoint

RESOLUTIONS = [32, 64]


def fixed_z(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 512, generator=torch.Generator().manual_seed(7))


def images(G, z: torch.Tensor) -> torch.Tensor:
    """G's images for z without and with truncation (psi 0.7, which needs w_avg), in one synthesis pass."""
    ws = G.map(z)
    return G.synthesize(torch.cat([ws, G.truncate(ws, psi=0.7)]))


def max_image_difference(G_a, G_b) -> float:
    z = fixed_z()
    return (images(G_a, z) - images(G_b, z)).abs().max().item()


def write_own(G, path):
    save_generator(G, path)


WRITERS = {"nvidia": write_nvidia_pickle, "rosinality": write_rosinality_checkpoint, "own": write_own}


# ---- round trips -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_round_trip_reproduces_images(tmp_path, fmt, resolution):
    G = make_tiny_generator(resolution=resolution, seed=resolution)
    path = tmp_path / f"generator.{fmt}"  # no telling extension: the format is read from the content
    WRITERS[fmt](G, path)
    loaded = load_generator(path)
    assert loaded.config == G.config
    assert torch.equal(loaded.w_avg, G.w_avg)
    assert max_image_difference(loaded, G) < 1e-5
    assert loaded.checkpoint_metadata["w_avg_source"] == "stored"
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    if fmt != "rosinality":  # rosinality's layout needs a rescaled conv weight, equal up to rounding only
        expected, got = G.state_dict(), loaded.state_dict()
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_nvidia_pickle_has_nvidia_layout(tmp_path, monkeypatch, tiny_generator):
    """Unpickle with plain pickle against stand-ins of NVIDIA's modules: the records must carry what
    torch_utils.persistence._reconstruct_persistent_obj relies on, under the real class and tensor names."""
    metas = []

    def reconstruct(meta):
        assert set(meta) == {"type", "version", "module_src", "class_name", "state"}
        assert meta["type"] == "class" and meta["version"] == 6 and isinstance(meta["module_src"], str)
        metas.append(meta)
        return types.SimpleNamespace(**meta)

    persistence, util = types.ModuleType("torch_utils.persistence"), types.ModuleType("dnnlib.util")
    persistence._reconstruct_persistent_obj = reconstruct
    util.EasyDict = type("EasyDict", (dict,), {})
    for name, module in {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    write_nvidia_pickle(tiny_generator, tmp_path / "g.pkl")
    with open(tmp_path / "g.pkl", "rb") as f:
        data = pickle.load(f)  # our own file, read against the stand-ins above

    assert list(data) == ["G", "D", "G_ema", "augment_pipe", "training_set_kwargs"]
    assert {m["class_name"] for m in metas} == {
        "Generator",
        "Discriminator",
        "MappingNetwork",
        "SynthesisNetwork",
        "SynthesisBlock",
        "SynthesisLayer",
        "ToRGBLayer",
        "FullyConnectedLayer",
    }
    G_ema = data["G_ema"]
    assert G_ema.class_name == "Generator" and data["D"].class_name == "Discriminator" and data["augment_pipe"] is None
    kwargs = G_ema.state["_init_kwargs"]
    assert (kwargs["img_resolution"], kwargs["c_dim"], kwargs["z_dim"]) == (32, 0, 512)
    assert (
        isinstance(kwargs["synthesis_kwargs"], util.EasyDict) and kwargs["synthesis_kwargs"]["architecture"] == "skip"
    )
    assert default_rule(kwargs["synthesis_kwargs"], 32) == tiny_generator.synthesis.channels
    b8 = G_ema.state["_modules"]["synthesis"].state["_modules"]["b8"]
    assert b8.class_name == "SynthesisBlock" and b8.state["_modules"]["conv0"].class_name == "SynthesisLayer"
    assert b8.state["_modules"]["torgb"].state["_modules"]["affine"].class_name == "FullyConnectedLayer"

    def flatten(record, prefix=""):
        out = {prefix + k: v for group in ("_parameters", "_buffers") for k, v in record.state[group].items()}
        for name, child in record.state["_modules"].items():
            out.update(flatten(child, f"{prefix}{name}."))
        return out

    tensors, expected = flatten(G_ema), tiny_generator.state_dict()
    assert tensors.keys() == expected.keys() and all(torch.equal(tensors[k], expected[k]) for k in expected)
    assert isinstance(tensors["mapping.fc0.weight"], torch.nn.Parameter) and not isinstance(
        tensors["mapping.w_avg"], torch.nn.Parameter
    )


def default_rule(synthesis_kwargs, resolution):
    base, cap = synthesis_kwargs["channel_base"], synthesis_kwargs["channel_max"]
    return {2**i: min(base // 2**i, cap) for i in range(2, int(math.log2(resolution)) + 1)}


def test_nvidia_pickle_with_stylegan3_repo_flat_kwargs_loads(tmp_path, tiny_generator):
    # stylegan3's networks_stylegan2.Generator takes the synthesis kwargs flat, not as synthesis_kwargs=
    snapshot = nvidia_snapshot(tiny_generator)
    kwargs = snapshot["G_ema"].state["_init_kwargs"]
    kwargs.update(kwargs.pop("synthesis_kwargs"))
    dump_nvidia_snapshot(snapshot, tmp_path / "sg3repo.pkl")
    assert max_image_difference(load_generator(tmp_path / "sg3repo.pkl"), tiny_generator) < 1e-5


def make_conditional(snapshot):
    snapshot["G_ema"].state["_init_kwargs"]["c_dim"] = 10


def make_resnet(snapshot):
    snapshot["G_ema"].state["_init_kwargs"]["synthesis_kwargs"]["architecture"] = "resnet"


def make_stylegan3(snapshot):
    modules = snapshot["G_ema"].state["_modules"]["synthesis"].state["_modules"]
    modules["input"] = modules.pop("b4")  # StyleGAN3: Fourier-feature 'input', then L0_36_512, ...


@pytest.mark.parametrize(
    "variant, phrase",
    [(make_conditional, "c_dim=10"), (make_resnet, "architecture='resnet'"), (make_stylegan3, "StyleGAN3")],
)
def test_unsupported_nvidia_generators_are_refused_clearly(tmp_path, tiny_generator, variant, phrase):
    snapshot = nvidia_snapshot(tiny_generator)
    variant(snapshot)
    path = tmp_path / f"{variant.__name__}.pkl"
    dump_nvidia_snapshot(snapshot, path)
    with pytest.raises(CheckpointError, match=phrase) as info:
        load_generator(path)
    assert path.name in str(info.value)


# ---- rosinality ------------------------------------------------------------------------------------------
def rosinality_forward(
    sd: dict, z: torch.Tensor, *, latent_avg: torch.Tensor, psi: float, lr_mlp: float = 0.01
) -> torch.Tensor:
    """rosinality's Generator.forward (randomize_noise=False, truncation=psi), written from its model.py
    with per-sample modulated weights, on a g_ema state dict."""
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        W = sd[f"style.{i}.weight"]
        x = F.leaky_relu(
            F.linear(x, W * lr_mlp / math.sqrt(W.shape[1])) + sd[f"style.{i}.bias"] * lr_mlp, 0.2
        ) * math.sqrt(2)
        i += 1
    w = latent_avg + psi * (x - latent_avg)

    def upfirdn(x, kernel, *, up, pad):  # rosinality's upfirdn2d_native: zero insertion, pad, true convolution
        if up == 2:
            x = _zero_insert(x)
        x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
        return F.conv2d(x, kernel.flip([0, 1])[None, None].expand(x.shape[1], 1, *kernel.shape), groups=x.shape[1])

    def modulated(x, prefix, *, demodulate, upsample=False):
        weight = sd[f"{prefix}.conv.weight"][0]
        M, b = sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"]
        style = F.linear(w, M / math.sqrt(M.shape[1]), b)
        per_sample = weight[None] / math.sqrt(weight[0].numel()) * style[:, None, :, None, None]
        if demodulate:
            per_sample = per_sample * torch.rsqrt(per_sample.square().sum(dim=[2, 3, 4]) + 1e-8)[:, :, None, None, None]
        if upsample:
            out = torch.cat(
                [F.conv_transpose2d(x[n : n + 1], per_sample[n].transpose(0, 1), stride=2) for n in range(len(x))]
            )
            return upfirdn(out, sd[f"{prefix}.conv.blur.kernel"], up=1, pad=(1, 1))
        return torch.cat([F.conv2d(x[n : n + 1], per_sample[n], padding=weight.shape[-1] // 2) for n in range(len(x))])

    def styled_conv(x, prefix, noise, *, upsample=False):
        out = modulated(x, prefix, demodulate=True, upsample=upsample) + sd[f"{prefix}.noise.weight"] * noise
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def to_rgb(x, prefix, skip):
        out = modulated(x, prefix, demodulate=False) + sd[f"{prefix}.bias"]
        return out if skip is None else out + upfirdn(skip, sd[f"{prefix}.upsample.kernel"], up=2, pad=(2, 1))

    out = sd["input.input"].repeat(len(z), 1, 1, 1)
    out = styled_conv(out, "conv1", sd["noises.noise_0"])
    skip = to_rgb(out, "to_rgb1", None)
    i = 0
    while f"to_rgbs.{i}.conv.weight" in sd:
        out = styled_conv(out, f"convs.{2 * i}", sd[f"noises.noise_{2 * i + 1}"], upsample=True)
        out = styled_conv(out, f"convs.{2 * i + 1}", sd[f"noises.noise_{2 * i + 2}"])
        skip = to_rgb(out, f"to_rgbs.{i}", skip)
        i += 1
    return skip


def _zero_insert(x: torch.Tensor) -> torch.Tensor:
    up = x.new_zeros(x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3])
    up[:, :, ::2, ::2] = x
    return up


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_rosinality_file_computes_our_images_under_rosinality_numerics(tmp_path, resolution):
    G = make_tiny_generator(resolution=resolution, seed=resolution + 1)
    write_rosinality_checkpoint(G, tmp_path / "g.pt")
    checkpoint = torch.load(tmp_path / "g.pt", weights_only=True)
    assert checkpoint["g_ema"]["conv1.conv.weight"].shape == (1, 32, 32, 3, 3)
    assert checkpoint["g_ema"]["to_rgb1.bias"].shape == (1, 3, 1, 1)
    z = fixed_z()
    for psi in (1.0, 0.7):
        reference = rosinality_forward(checkpoint["g_ema"], z, latent_avg=checkpoint["latent_avg"], psi=psi)
        assert (reference - G(z, truncation_psi=psi)).abs().max().item() < 1e-5


def test_rosinality_without_latent_avg_estimates_it(tmp_path, tiny_generator):
    path = tmp_path / "train_checkpoint.pt"
    write_rosinality_checkpoint(tiny_generator, path, include_latent_avg=False)
    with pytest.warns(UserWarning, match="stores no w_avg"):
        first = load_generator(path)
    with pytest.warns(UserWarning):
        second = load_generator(path)
    assert torch.equal(first.w_avg, second.w_avg)  # seeded
    assert first.checkpoint_metadata["w_avg_source"].startswith("estimated")
    # The fixture's w_avg is an independent 2048-sample mean: the two means differ by sampling noise only.
    w = tiny_generator.mapping(torch.randn(4096, 512, generator=torch.Generator().manual_seed(123)))
    standard_error = w.std(dim=0) * math.sqrt(1 / 2048 + 1 / W_AVG_SAMPLES)
    assert ((first.w_avg - tiny_generator.w_avg) / standard_error).abs().max().item() < 6.0
    z = fixed_z()
    assert (first(z) - tiny_generator(z)).abs().max().item() < 1e-5  # only the truncation centre is estimated


def test_rosinality_training_checkpoint_in_legacy_torch_format(tmp_path, tiny_generator):
    # train.py's keys (argparse options included) in torch's pre-1.6 container, plus latent_avg
    g_ema = rosinality_state_dict(tiny_generator)
    checkpoint = {
        "g": g_ema,
        "d": {},
        "g_ema": g_ema,
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002}]},
        "args": argparse.Namespace(size=32, n_mlp=2),
        "ada_aug_p": 0.0,
        "latent_avg": tiny_generator.w_avg,
    }
    torch.save(checkpoint, tmp_path / "000100.pt", _use_new_zipfile_serialization=False)
    assert max_image_difference(load_generator(tmp_path / "000100.pt"), tiny_generator) < 1e-5


# ---- own format ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_own_format_float16(tmp_path, resolution):
    G = make_tiny_generator(resolution=resolution, seed=resolution + 2)
    save_generator(
        G, tmp_path / "g16.pt", dtype=torch.float16, metadata={"recipe": {"steps": 10, "lr": 2e-3}, "tags": ["tiny"]}
    )
    loaded = load_generator(tmp_path / "g16.pt")
    assert all(t.dtype == torch.float32 for t in loaded.state_dict().values())
    # Exact statement: the file holds G's tensors rounded to float16.
    rounded = copy.deepcopy(G)
    for t in rounded.state_dict().values():
        t.copy_(t.half().float())
    assert max_image_difference(loaded, rounded) < 1e-5
    # Loose sanity bound: float16 keeps 11 significant bits (relative error <= 2**-11 per weight); over
    # ~10 layers that moves images in [-1, 1] by about 1e-2 at most, so 0.05 only catches gross errors.
    assert max_image_difference(loaded, G) < 0.05
    assert (tmp_path / "g16.pt").stat().st_size < 0.6 * _own_size(G, tmp_path)
    metadata = read_checkpoint_metadata(tmp_path / "g16.pt")
    assert metadata["recipe"] == {"steps": 10, "lr": 2e-3} and metadata["tags"] == ["tiny"]
    assert (
        metadata["stored_dtype"] == "float16"
        and metadata["format"] == "fzplus-generator"
        and metadata["config"] == G.config
    )


def _own_size(G, folder) -> int:
    save_generator(G, folder / "g32.pt")
    return (folder / "g32.pt").stat().st_size


def test_save_generator_is_atomic(tmp_path, monkeypatch, tiny_generator):
    path = tmp_path / "g.pt"
    save_generator(tiny_generator, path, metadata={"run": 1})
    before = path.read_bytes()

    def interrupted_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", interrupted_save)
    for target in (path, tmp_path / "new.pt"):
        with pytest.raises(OSError, match="disk full"):
            save_generator(tiny_generator, target, metadata={"run": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt"]  # no temporary left, no new.pt


def test_save_generator_rejects_non_plain_metadata(tmp_path, tiny_generator):
    with pytest.raises(ValueError, match=r"metadata\['recipe'\]\['schedule'\] is a function"):
        save_generator(tiny_generator, tmp_path / "g.pt", metadata={"recipe": {"schedule": lambda step: 1e-3}})
    assert not (tmp_path / "g.pt").exists()


def test_shape_mismatch_names_file_and_tensor(tmp_path, tiny_generator):
    path = tmp_path / "edited.pt"
    save_generator(tiny_generator, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["synthesis.b8.conv0.weight"] = torch.zeros(32, 32, 1, 1)
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match=r"edited\.pt.*shape mismatch: synthesis\.b8\.conv0\.weight \(32, 32, 1, 1\)"
    ):
        load_generator(path)


# ---- files that are not generators -----------------------------------------------------------------------
class _RunsCommand:
    """Pickles as a call of os.system: what a malicious checkpoint does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _random_bytes(path, sentinel, G):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _empty(path, sentinel, G):
    path.write_bytes(b"")


def _truncated_nvidia_pickle(path, sentinel, G):
    write_nvidia_pickle(G, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _truncated_torch_file(path, sentinel, G):
    save_generator(G, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickle_calling_os_system(path, sentinel, G):
    path.write_bytes(pickle.dumps({"G_ema": _RunsCommand(f"touch {sentinel}")}, protocol=4))


def _old_protocol_pickle_calling_os_system(path, sentinel, G):
    path.write_bytes(pickle.dumps({"G_ema": _RunsCommand(f"touch {sentinel}")}, protocol=0))


def _torch_file_calling_os_system(path, sentinel, G):
    torch.save({"g_ema": _RunsCommand(f"touch {sentinel}")}, path)


def _unrelated_torch_dict(path, sentinel, G):
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, path)


def _pickle_without_G_ema(path, sentinel, G):
    path.write_bytes(pickle.dumps({"D": {"weight": np.zeros(3)}}, protocol=3))


def _tensorflow_pickle(path, sentinel, G):
    path.write_bytes(b"\x80\x03cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01.")  # what NVIDIA's TF pickles open with


@pytest.mark.parametrize(
    "make, phrase",
    [
        (_random_bytes, "neither a torch file nor"),
        (_empty, "is empty"),
        (_truncated_nvidia_pickle, "truncated or corrupt pickle"),
        (_truncated_torch_file, "truncated or corrupt torch file"),
        (_pickle_calling_os_system, r"refused without running it"),
        (_old_protocol_pickle_calling_os_system, "neither a torch file nor"),
        (_torch_file_calling_os_system, "not unpickled"),
        (_unrelated_torch_dict, r"keys \['epoch', 'model'\]"),
        (_pickle_without_G_ema, r"without an NVIDIA network under 'G_ema' \(found keys \['D'\]\)"),
        (_tensorflow_pickle, "legacy.py"),
    ],
)
def test_non_generator_files_are_refused_with_file_name(tmp_path, tiny_generator, make, phrase):
    path, sentinel = tmp_path / f"{make.__name__.strip('_')}.pkl", tmp_path / "SENTINEL"
    make(path, sentinel, tiny_generator)
    with pytest.raises(CheckpointError, match=phrase) as info:
        load_generator(path)
    assert str(path) in str(info.value)
    assert not sentinel.exists(), "a pickled os.system call was executed"


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-generator.pkl"):
        load_generator(tmp_path / "no-such-generator.pkl")
