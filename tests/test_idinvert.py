"""IDInvert: the domain-guided W+ encoder, its files and training, and the domain-regularised space."""

from __future__ import annotations

import re

import pytest
import torch

import spaces
from conftest import make_domain_encoder, make_tiny_generator
from fzplus.encoders.base_code import EncoderFileError, build_encoder, save_encoder
from fzplus.encoders.domain import (
    build_domain_encoder,
    domain_distance,
    encode_ws,
    load_domain_encoder,
    read_domain_encoder_file,
    save_domain_encoder,
)
from fzplus.encoders.domain_training import evaluate_domain_encoder, train_domain_encoder
from fzplus.inversion import edit, invert, render
from spaces.base import SpaceContext

IDINVERT = spaces.get("IDInvert")


@pytest.fixture(scope="module")
def generator():
    return make_tiny_generator()


@pytest.fixture(scope="module")
def targets():
    other = make_tiny_generator(seed=1)
    with torch.no_grad():
        return other(torch.randn(3, 512, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


@pytest.mark.parametrize("dense_rank", [None, 3])
def test_encoder_outputs_w_plus_and_starts_at_w_avg(generator, targets, dense_rank):
    untrained = build_domain_encoder(generator, channel_base=4, channel_max=8, dense_rank=dense_rank).eval()
    ws = encode_ws(untrained, targets)
    assert ws.shape == (3, generator.num_ws, generator.w_dim)
    assert torch.equal(ws, generator.w_avg.expand_as(ws))  # the zero-initialised dense layer adds nothing
    # ...yet every weight gets a gradient, the bottleneck's included once the output layer has moved
    untrained.train()
    step = torch.optim.SGD(untrained.parameters(), lr=1.0)
    for _ in range(2):
        step.zero_grad()
        untrained(targets).square().mean().backward()
        step.step()
    dense = [untrained.dense] if dense_rank is None else list(untrained.dense)
    assert all(layer.weight.grad.abs().sum() > 0 for layer in dense)
    if dense_rank is not None:
        assert untrained.dense[0].weight.shape == (dense_rank, 8 * 16)
    varied = encode_ws(make_domain_encoder(generator), targets)
    assert not torch.allclose(varied[0], varied[1])  # a trained encoder's answer depends on the image


def test_domain_term_is_zero_exactly_at_a_code_the_encoder_maps_back_to_itself(generator, targets):
    constant = make_domain_encoder(generator, scale=0.0)  # E(x) = w_avg for every x, so w_avg = E(G(w_avg))
    fixed_point = encode_ws(constant, targets)
    assert torch.equal(domain_distance(constant, generator, fixed_point), torch.zeros(3))
    moved = fixed_point + 0.1 * torch.randn_like(fixed_point)
    assert (domain_distance(constant, generator, moved) > 0).all()
    # the space's regulariser is that term times lambda_domain
    ctx = SpaceContext(generator=generator, encoder=constant, settings=IDINVERT.settings_for({"lambda_domain": 2.0}))
    assert torch.equal(IDINVERT.regularizer({"w": fixed_point}, ctx), torch.zeros(3))
    assert torch.allclose(IDINVERT.regularizer({"w": moved}, ctx), 2.0 * domain_distance(constant, generator, moved))


def test_domain_term_pulls_codes_towards_the_encoders_domain(generator):
    encoder = make_domain_encoder(generator)
    w = generator.w_avg.expand(2, generator.num_ws, -1).clone() + 0.3 * torch.randn(
        2, generator.num_ws, generator.w_dim
    )
    w.requires_grad_(True)
    (grad,) = torch.autograd.grad(domain_distance(encoder, generator, w).sum(), w)
    assert grad.abs().sum() > 0
    assert (
        domain_distance(encoder, generator, (w - 0.5 * grad).detach()) < domain_distance(encoder, generator, w.detach())
    ).all()


def test_space_starts_at_the_encoder_output_and_needs_an_encoder(generator, targets):
    encoder = make_domain_encoder(generator)
    ctx = SpaceContext(generator=generator, encoder=encoder)
    codes = IDINVERT.init_codes(targets, ctx, image_seeds=[0, 1, 2], encoder=encoder)
    assert torch.equal(codes["w"], encode_ws(encoder, targets))
    with pytest.raises(ValueError, match="load_domain_encoder"):
        IDINVERT.init_codes(targets, ctx, image_seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="SpaceContext\\(encoder="):
        IDINVERT.regularizer(codes, SpaceContext(generator=generator))


def test_inversion_traces_the_weighted_domain_term_and_zero_edit_is_the_inversion(generator, targets):
    encoder = make_domain_encoder(generator)
    result = invert(
        targets,
        generator,
        IDINVERT,
        steps=3,
        perceptual=None,
        progress=False,
        encoder=encoder,
        method_settings={"lambda_domain": 3.0},
    )
    start = encode_ws(encoder, targets)
    assert torch.allclose(result.losses["reg"][:, 0], 3.0 * domain_distance(encoder, generator, start), rtol=1e-5)
    assert not torch.equal(result.codes["w"], start)
    assert result.settings["method_settings"] == {"lambda_domain": 3.0}
    direction = torch.randn(generator.w_dim)
    assert torch.equal(
        render(edit(result.codes, IDINVERT, generator, direction, 0.0), generator, IDINVERT), result.reconstructions
    )


def test_saved_encoder_loads_only_for_its_generator(generator, tmp_path):
    encoder = make_domain_encoder(generator)
    path = save_domain_encoder(encoder, tmp_path / "idinvert.pt", generator=generator)
    loaded = load_domain_encoder(path, generator=generator)
    assert not loaded.training
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(encode_ws(loaded, x), encode_ws(encoder, x))
    other = make_tiny_generator(seed=5)
    with pytest.raises(EncoderFileError, match=re.escape(str(path)) + ".*other weights"):
        load_domain_encoder(path, generator=other)
    f_encoder = save_encoder(
        build_encoder(generator, base_size=8, stage_channels=(4, 8, 8)), tmp_path / "f.pt", generator=generator
    )
    with pytest.raises(EncoderFileError, match="IDInvert encoder file"):
        load_domain_encoder(f_encoder, generator=generator)
    with pytest.raises(FileNotFoundError, match="train_mini_idinvert_encoder"):
        load_domain_encoder(tmp_path / "missing.pt", generator=generator)


def test_training_resumes_exactly_and_lowers_the_reconstruction_error(tmp_path):
    G = make_tiny_generator(resolution=16)
    settings = dict(batch_size=4, lr=1e-3, channel_base=4, channel_max=8, seed=3, progress=False, r1_every=2)
    straight, history = train_domain_encoder(G, steps=4, **settings)
    checkpoint = tmp_path / "checkpoint.pt"
    train_domain_encoder(G, steps=2, checkpoint_path=checkpoint, checkpoint_every=1, **settings)
    assert read_domain_encoder_file(checkpoint)["training"]["step"] == 2
    resumed, resumed_history = train_domain_encoder(G, steps=4, checkpoint_path=checkpoint, **settings)
    assert resumed_history == history
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(EncoderFileError, match="lr"):
        train_domain_encoder(G, steps=4, checkpoint_path=checkpoint, **{**settings, "lr": 2e-3})
    assert all(p.requires_grad is False for p in G.parameters())  # the caller's flags are restored
    longer, _ = train_domain_encoder(G, steps=30, **settings)
    figures = evaluate_domain_encoder(G, longer, num_samples=16)
    assert figures["encoder"].mean() < figures["w_avg"].mean()
