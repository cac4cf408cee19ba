"""Pivotal tuning (PTI and PTI w/ Z+, spaces/_tuning.py): the batched tuning equals PTI's loop run per image,
tuning improves on its pivot, edits keep the tuned weights, storage is float16."""

from __future__ import annotations

import pytest
import torch

import spaces
from conftest import make_tiny_generator
from fzplus.inversion import edit, invert, render
from fzplus.perceptual import build_perceptual
from spaces._tuning import TunedSpace, parameter_count, tune_reference, tuned_synthesis
from spaces.base import SpaceContext

SIZE = 32


@pytest.fixture(scope="module")
def generator():
    return make_tiny_generator()


@pytest.fixture(scope="module")
def stlpips():
    return build_perceptual("stlpips-vgg")


@pytest.fixture(scope="module")
def targets():
    other = make_tiny_generator(seed=1)  # images outside the range of the generator we invert into
    with torch.no_grad():
        return other(torch.randn(3, 512, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


def pivots(targets, G, stlpips, name="W"):
    return invert(targets, G, name, steps=3, perceptual=stlpips, perceptual_size=SIZE, progress=False)


def test_tuned_synthesis_with_zero_delta_is_the_generator(generator):
    ws = generator.map(torch.randn(3, 512, generator=torch.Generator().manual_seed(2)))
    zero = torch.zeros(3, parameter_count(generator))
    assert torch.allclose(tuned_synthesis(generator, zero, ws), generator.synthesize(ws), atol=1e-5, rtol=0)


def pixel_losses(targets):
    """image_losses with an L1 distance standing in for the perceptual one (float64-capable)."""

    def losses(images, index):
        diff = images - targets[index]
        return diff.square().flatten(1).mean(1), diff.abs().flatten(1).mean(1)

    return losses


@pytest.mark.parametrize("pivot", ["W", "Z+"])
def test_batched_tuning_equals_ptis_loop_for_each_image_alone(targets, pivot):
    # As test_inversion's batching test: in float32 a batched (vmapped) convolution rounds differently from
    # a single-image one, and Adam's normalised steps magnify that for the few gradient entries near zero
    # (isolated differences ~1e-5 after 3 steps). float64 keeps that noise far below 1e-5, so what this
    # test sees is any real coupling between images (shared moments, a mean instead of a sum, a wrong stop).
    G = make_tiny_generator(resolution=16).double()
    x = torch.nn.functional.avg_pool2d(targets, 2).double()
    space = TunedSpace(
        name="t", slug="t", pivot=spaces.get(pivot), description="float64 deltas", stored_dtype=torch.float64
    )
    codes = invert(x, G, pivot, steps=3, perceptual=None, progress=False).codes
    ctx = SpaceContext(generator=G)
    losses = pixel_losses(x)
    with torch.no_grad():
        first = losses(G.synthesize(space.generator_inputs(codes, ctx).ws), torch.arange(3))[1]
    # Stop the image with the smallest distance at once, the others run on: the batch must not couple them.
    settings = dict(steps=5, stop_at=float(first.min()) + 1e-9)
    batched, descent = space.refine(codes, ctx, image_losses=losses, settings=settings)
    traces = descent.traces
    alone = tune_reference(space, codes, ctx, image_losses=losses, settings=settings)
    assert torch.allclose(batched["delta"], alone, atol=1e-5, rtol=0)
    stopped = first.argmin()
    assert torch.equal(batched["delta"][stopped], torch.zeros_like(alone[stopped]))
    assert (batched["delta"].abs().amax(dim=1) > 1e-4).sum() == 2
    assert traces["total"].shape == (3, 5) and (traces["total"][stopped] == traces["total"][stopped, 0]).all()
    assert descent.steps[stopped] == 0 and (descent.steps.sum() == 2 * 5)  # the budget: the updates taken
    for name in space.variables:  # the pivot codes are handed on as they were
        assert torch.equal(batched[name], codes[name])


@pytest.mark.parametrize("name, pivot", [("PTI", "W"), ("PTI w/ Z+", "Z+")])
def test_tuning_lowers_mse_below_the_pivots_on_every_image(generator, targets, stlpips, name, pivot):
    base = pivots(targets, generator, stlpips, pivot)
    tuned = invert(
        targets,
        generator,
        name,
        steps=3,
        perceptual=stlpips,
        perceptual_size=SIZE,
        progress=False,
        method_settings=dict(steps=10, lr=1e-3, stop_at=0.0),
    )
    for var in base.codes:  # the pivot is the pivot space's own inversion
        assert torch.equal(tuned.codes[var], base.codes[var])
    mse = lambda r: (r.reconstructions - targets).square().flatten(1).mean(1)  # noqa: E731
    assert (mse(tuned) < 0.9 * mse(base)).all(), (mse(tuned), mse(base))
    assert tuned.losses["mse"].shape == (3, 3 + 10)  # the tuning steps continue the trace
    assert tuned.codes["delta"].dtype == torch.float16
    assert tuned.codes["delta"].element_size() * tuned.codes["delta"][0].numel() == 2 * parameter_count(generator)


def test_edits_move_the_pivot_and_keep_the_tuned_weights(generator, targets, stlpips):
    result = invert(
        targets[:2],
        generator,
        "PTI",
        steps=2,
        perceptual=stlpips,
        perceptual_size=SIZE,
        progress=False,
        method_settings=dict(steps=3, lr=1e-3, stop_at=0.0),
    )
    direction = torch.randn(512, generator=torch.Generator().manual_seed(3))
    unchanged = edit(result.codes, "PTI", generator, direction, 0.0)
    assert torch.equal(render(unchanged, generator, "PTI"), result.reconstructions)
    moved = edit(result.codes, "PTI", generator, direction, 1.0)
    assert torch.equal(moved["delta"], result.codes["delta"])
    assert torch.allclose(moved["w"], result.codes["w"] + direction)
    untuned = render({"w": moved["w"]}, generator, "PTI")  # the same edit on the untuned generator differs
    assert not torch.allclose(render(moved, generator, "PTI"), untuned, atol=1e-3)


def test_a_generated_samples_true_codes_have_no_delta_and_render_it(generator):
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(4))
    ctx = SpaceContext(generator=generator)
    for name in ("PTI", "PTI w/ Z+"):
        codes = spaces.get(name).codes_for_sample(z, ctx)
        assert not codes["delta"].any()
        with torch.no_grad():
            assert torch.allclose(spaces.get(name).render(codes, ctx), generator(z), atol=1e-5, rtol=0)


def test_unknown_tuning_settings_and_f_pivots_are_refused(generator, targets):
    with pytest.raises(ValueError, match=r"unknown inversion.tuning setting\(s\) \['step'\]"):
        invert(targets[:1], generator, "PTI", steps=1, perceptual=None, progress=False, method_settings=dict(step=3))
    with pytest.raises(ValueError, match="F space"):
        TunedSpace(name="x", slug="x", pivot=spaces.get("F/W+"), description="x")


def test_the_engines_image_losses_on_a_subset_equal_those_rows_of_the_whole_batch(generator, targets, stlpips):
    from fzplus.inversion.losses import ImageLosses

    losses = ImageLosses(targets, stlpips, SIZE)
    with torch.no_grad():
        images = generator(torch.randn(3, 512, generator=torch.Generator().manual_seed(6)))
        mse, per = losses(images, torch.arange(3))
        sub_mse, sub_per = losses(images[[0, 2]], torch.tensor([0, 2]))  # once image 1 has stopped
    assert torch.allclose(sub_mse, mse[[0, 2]]) and torch.allclose(sub_per, per[[0, 2]], atol=1e-6)


def test_a_method_given_its_pivots_inversion_from_disk_equals_the_method_run_whole(generator, targets, tmp_path):
    from benchmarks.pipeline.evaluate import read_inversion, write_inversion

    run = dict(steps=2, perceptual=None, progress=False, method_settings=dict(steps=2, lr=1e-3, stop_at=0.0))
    whole = invert(targets, generator, "PTI", **run)
    write_inversion(
        invert(targets, generator, "W", steps=2, perceptual=None, progress=False), tmp_path
    )  # the pipeline's W job
    reused = invert(targets, generator, "PTI", pivot=read_inversion(tmp_path, space_name="W"), **run)
    assert set(reused.codes) == set(whole.codes)
    for name in whole.codes:
        assert torch.equal(reused.codes[name], whole.codes[name]), name
    for term in whole.losses:
        assert torch.equal(reused.losses[term], whole.losses[term]), term
    assert torch.equal(reused.reconstructions, whole.reconstructions)


def test_a_pivot_inversion_of_another_space_images_steps_or_settings_is_refused(generator, targets):
    w = invert(targets[:2], generator, "W", steps=2, perceptual=None, progress=False)
    run = dict(steps=2, perceptual=None, progress=False, method_settings=dict(steps=1))
    with pytest.raises(ValueError, match="pivots on 'Z\\+'"):
        invert(targets[:2], generator, "PTI w/ Z+", pivot=w, **run)
    with pytest.raises(ValueError, match="has no pivot space"):
        invert(targets[:2], generator, "W+", pivot=w, steps=2, perceptual=None, progress=False)
    with pytest.raises(ValueError, match="same targets"):
        invert(targets[:2], generator, "PTI", pivot=w, image_keys=["a", "b"], **run)
    with pytest.raises(ValueError, match=r"ran \[2\] steps"):
        invert(targets[:2], generator, "PTI", pivot=w, **{**run, "steps": 3})
    with pytest.raises(ValueError, match="other settings.*'lr': \\(0.01, 0.02\\)"):
        invert(targets[:2], generator, "PTI", pivot=w, lr=0.02, **run)
