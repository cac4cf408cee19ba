"""Base-code encoder: shapes, resizing, training on generated pairs, checkpoints and resume, file checks."""

from __future__ import annotations

import math
import pickle
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import make_tiny_generator
from fzplus.encoders.base_code import (
    BaseCodeEncoder,
    EncoderFileError,
    build_encoder,
    encode,
    load_encoder,
    mean_feature_map,
    read_encoder_file,
    save_encoder,
    write_atomically,
)
from fzplus.encoders.base_code_training import evaluate_encoder, learning_rate, train_encoder
from fzplus.images import resize_bilinear

NARROW = (8, 16, 32)  # stage widths for the tiny generator (BDInvert's are 128, 256, 512)


class RandomConvDistance(nn.Module):
    """Perceptual stand-in: squared distance of fixed random conv features, [N]. Optionally fails on
    its n-th call, to simulate a run killed mid-training."""

    def __init__(self, *, fail_on_call: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0)) / math.sqrt(27))
        self.fail_on_call, self.calls = fail_on_call, 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        fx, fy = (F.leaky_relu(F.conv2d(v, self.weight, stride=2), 0.2) for v in (x, y))
        return (fx - fy).square().mean(dim=(1, 2, 3))


@pytest.fixture(scope="module")
def trained():
    """One tiny generator and an encoder trained on it for base size 8 (shared: training is the slow part)."""
    G = make_tiny_generator()
    encoder, history = train_encoder(
        G, base_size=8, steps=80, batch_size=8, stage_channels=NARROW, seed=0, progress=False
    )
    return G, encoder, history


@pytest.mark.parametrize("base_size", [4, 8])
def test_encoder_output_fits_the_generators_base_code(tiny_generator, base_size):
    G = tiny_generator
    encoder = build_encoder(G, base_size=base_size, stage_channels=NARROW)
    assert encoder.input_size == 8 * base_size
    images = G.synthesize(G.map(G.sample_z(3, seed=1)))  # [3, 3, 32, 32]: resized to 8s inside encode
    f0 = encode(encoder, images, base_size=base_size)
    assert f0.shape == (3, G.base_channels(base_size), base_size, base_size)
    assert torch.isfinite(f0).all()
    assert G.synthesize_from(f0, G.map(G.sample_z(3, seed=2))).shape == images.shape
    with pytest.raises(ValueError, match="base_size=16"):
        encode(encoder, images, base_size=16)
    with pytest.raises(AssertionError, match="square images"):
        encoder(images[:, :, :16, :24])
    assert torch.equal(encoder.eval()(images), f0)  # callable on targets of any size, as the F spaces call it


def test_encoder_architecture_follows_bdinvert():
    encoder = BaseCodeEncoder(base_size=16, out_channels=512)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128] * 3 + [256] * 3 + [512] * 3 + [512, 512]
    assert sum(isinstance(m, nn.AvgPool2d) for m in encoder.modules()) == 3
    assert isinstance(encoder.layers[-1], nn.Conv2d)  # nothing after the last conv: f is signed
    assert encoder.input_size == 128
    assert encoder(torch.randn(2, 3, 128, 128)).shape == (2, 512, 16, 16)


def test_build_encoder_rejects_a_size_without_a_split(tiny_generator):
    with pytest.raises(ValueError, match="split size"):
        build_encoder(tiny_generator, base_size=6)


def test_resize_antialiases_when_shrinking():
    noise = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # all energy up to Nyquist
    small = resize_bilinear(noise, size=8)
    assert small.shape == (4, 3, 8, 8)
    sampled = F.interpolate(noise, size=(8, 8), mode="bilinear", align_corners=False)  # 4 of 64 pixels per output
    assert small.std() < 0.5 * sampled.std()  # averaged over the footprint, not aliased
    constant = torch.full((1, 3, 8, 8), 0.25)
    assert torch.allclose(resize_bilinear(constant, size=32), torch.full((1, 3, 32, 32), 0.25))
    assert resize_bilinear(noise, size=64) is noise


def test_mean_feature_map_is_the_feature_map_of_w_avg(tiny_generator):
    G = tiny_generator
    f = mean_feature_map(G, base_size=8, batch_size=3)
    assert f.shape == (3, G.base_channels(8), 8, 8)
    ws_avg = G.map(G.sample_z(3, seed=4), truncation_psi=0.0)  # psi 0 sends every code to w_avg
    assert torch.allclose(f, G.features(ws_avg, at=8).f, atol=1e-5)


def test_learning_rate_is_step_decay():
    kw = dict(lr=1e-3, lr_decay_every=2000, lr_decay=0.1)
    assert learning_rate(0, **kw) == learning_rate(1999, **kw) == 1e-3
    assert learning_rate(2000, **kw) == pytest.approx(1e-4)
    assert learning_rate(9999, **kw) == pytest.approx(1e-7)


def test_training_lowers_the_loss(trained):
    _, _, history = trained
    assert len(history["loss"]) == len(history["mse"]) == 80 and "perceptual" not in history
    first, last = (sum(history["loss"][i]) / 10 for i in (slice(0, 10), slice(-10, None)))
    assert last < 0.6 * first


def test_encoder_beats_the_mean_feature_map_on_held_out_images(trained):
    G, encoder, _ = trained
    mse = evaluate_encoder(G, encoder, base_size=8, num_samples=32, batch_size=16)
    assert all(v.shape == (32,) for v in mse.values())
    assert mse["encoder"].mean() < 0.85 * mse["mean_feature_map"].mean()
    assert (mse["encoder"] < mse["mean_feature_map"]).float().mean() > 0.6


def test_perceptual_term_enters_the_loss_and_nothing_but_the_encoder_learns(tiny_generator):
    G, perceptual = tiny_generator, RandomConvDistance()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    _, history = train_encoder(
        G,
        base_size=4,
        steps=3,
        batch_size=4,
        stage_channels=NARROW,
        perceptual=perceptual,
        lambda_enc=10.0,
        progress=False,
    )
    for loss, mse, per in zip(history["loss"], history["mse"], history["perceptual"]):
        assert loss == pytest.approx(mse + 10.0 * per, rel=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())
    assert all(p.grad is None for p in G.parameters()) and perceptual.weight.grad is None
    assert perceptual.weight.requires_grad  # the caller's flags are restored


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    G = make_tiny_generator()
    kw = dict(base_size=4, steps=6, batch_size=4, stage_channels=NARROW, seed=3, progress=False)
    reference, reference_history = train_encoder(G, perceptual=RandomConvDistance(), **kw)

    path = tmp_path / "encoder.pt"
    with pytest.raises(KeyboardInterrupt):  # dies in step 5 (index 4); the checkpoint of step 4 survives
        train_encoder(G, perceptual=RandomConvDistance(fail_on_call=5), checkpoint_path=path, checkpoint_every=2, **kw)
    assert read_encoder_file(path)["training"]["step"] == 4
    resumed, resumed_history = train_encoder(
        G, perceptual=RandomConvDistance(), checkpoint_path=path, checkpoint_every=2, **kw
    )

    assert resumed_history == reference_history
    reference_state, resumed_state = reference.state_dict(), resumed.state_dict()
    assert reference_state.keys() == resumed_state.keys()
    assert all(torch.equal(reference_state[k], resumed_state[k]) for k in reference_state)  # BatchNorm statistics too
    assert read_encoder_file(path)["training"]["step"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.pt"]  # no temporary files left

    with pytest.raises(EncoderFileError, match=re.escape(str(path)) + ".*lr"):
        train_encoder(G, perceptual=RandomConvDistance(), checkpoint_path=path, **dict(kw, lr=5e-4))
    with pytest.raises(EncoderFileError, match="past the 5 steps"):
        train_encoder(G, perceptual=RandomConvDistance(), checkpoint_path=path, **dict(kw, steps=5))


def test_saved_encoder_loads_only_for_its_generator_and_base_size(tmp_path):
    G = make_tiny_generator()
    encoder = build_encoder(G, base_size=4, stage_channels=NARROW)
    with torch.no_grad():  # give the BatchNorm statistics non-default values that must survive the round trip
        encoder.train()(torch.randn(4, 3, 32, 32))
    path = save_encoder(encoder, tmp_path / "enc.pt", generator=G)
    images = G.synthesize(G.map(G.sample_z(2, seed=7)))
    loaded = load_encoder(path, generator=G, base_size=4)
    assert torch.equal(encode(loaded, images, base_size=4), encode(encoder, images, base_size=4))

    name = re.escape(str(path))
    with pytest.raises(EncoderFileError, match=name + ".*other weights"):
        load_encoder(path, generator=make_tiny_generator(seed=1))
    with pytest.raises(EncoderFileError, match=name + ".*another generator configuration.*resolution"):
        load_encoder(path, generator=make_tiny_generator(resolution=16))
    with pytest.raises(EncoderFileError, match=name + ".*base_size=8"):
        load_encoder(path, generator=G, base_size=8)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_unusable_file_raises_an_error_naming_it(tmp_path, damage):
    G = make_tiny_generator()
    path = save_encoder(build_encoder(G, base_size=4, stage_channels=NARROW), tmp_path / "enc.pt", generator=G)
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        torch.save({"state_dict": torch.zeros(3)}, path)
    with pytest.raises(EncoderFileError, match=re.escape(str(path))):
        load_encoder(path, generator=G)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.pt"))):
        load_encoder(tmp_path / "missing.pt", generator=G)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_atomically({"value": torch.ones(2)}, tmp_path / "file.pt")
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        write_atomically({"value": lambda: None}, path)  # not picklable: torch.save fails half way
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["file.pt"]


def test_training_refuses_random_noise(tiny_generator):
    tiny_generator.noise_mode = "random"
    with pytest.raises(ValueError, match="noise_mode = 'const'"):
        train_encoder(tiny_generator, base_size=4, steps=1, stage_channels=NARROW, progress=False)


def test_encoder_stage_trains_then_reuses_a_pretrained_file_only_for_its_generator(tmp_path):
    from benchmarks.pipeline import StageError, pipeline_generator
    from benchmarks.pipeline.prepare import build_generator, encoder_stage, train_encoder_from_config
    from fzplus.config import load_config

    cfg = load_config("ci", overrides={"encoder.steps": 2, "progress": False})
    build_generator(cfg, tmp_path / "generator.pt")
    trained = tmp_path / "trained" / "encoder.pt"
    encoder_stage(cfg, generator_path=tmp_path / "generator.pt", out_path=trained)
    assert sorted(p.name for p in trained.parent.iterdir()) == ["encoder.pt"]  # the training checkpoint is gone
    G = pipeline_generator(tmp_path / "generator.pt", cfg)
    bootstrap = tmp_path / "bootstrap"
    _, history = train_encoder_from_config(
        cfg, G, out_path=bootstrap / "encoder.pt", checkpoint_path=bootstrap / "checkpoint.pt"
    )
    assert len(history["loss"]) == 2
    assert sorted(p.name for p in bootstrap.iterdir()) == ["encoder.pt"]
    first, again = (read_encoder_file(p)["encoder_state"] for p in (trained, bootstrap / "encoder.pt"))
    assert all(torch.equal(first[k], again[k]) for k in first)  # one recipe, one seed: the same encoder

    reused = tmp_path / "reused" / "encoder.pt"
    with_pretrained = load_config("ci", overrides={"encoder.pretrained": str(trained), "progress": False})
    encoder_stage(with_pretrained, generator_path=tmp_path / "generator.pt", out_path=reused)
    expected, got = (read_encoder_file(p)["encoder_state"] for p in (trained, reused))
    assert all(torch.equal(expected[k], got[k]) for k in expected)

    other = load_config("ci", overrides={"generator.random.seed": 1, "encoder.pretrained": str(trained)})
    build_generator(other, tmp_path / "other_generator.pt")
    with pytest.raises(
        StageError, match=r"encoder\.pretrained: .*" + re.escape(str(trained)) + r".*other weights.*train_mini_encoder"
    ):
        encoder_stage(other, generator_path=tmp_path / "other_generator.pt", out_path=tmp_path / "x" / "encoder.pt")
    assert not (tmp_path / "x").exists()


def test_the_committed_mini_encoder_belongs_to_the_committed_mini_generator():
    """A new models/mini/generator.pt must come with a retrained encoder (bootstrap rule train_mini_encoder)."""
    from fzplus.config import load_config, resolve_path
    from fzplus.generator import load_generator

    cfg = load_config("mini")
    G = load_generator(resolve_path(cfg["generator"]["checkpoint"]))
    encoder = load_encoder(
        resolve_path(cfg["encoder"]["pretrained"]), generator=G, base_size=cfg["inversion"]["base_size"]
    )
    assert encoder.config["stage_channels"] == cfg["encoder"]["stage_channels"]
