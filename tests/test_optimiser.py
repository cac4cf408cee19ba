"""The shared optimisation loop (fzplus.optimiser): schedule, stopping rule, budgets."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import make_tiny_generator
from fzplus.inversion import invert
from fzplus.optimiser import LearningRate, StoppingRule, descend


def test_schedule_ramps_up_holds_and_ramps_down():
    lr = LearningRate(peak=0.1, rampup=0.05, rampdown=0.25)
    cap = 200
    assert lr.at(0, cap) == 0.0
    assert lr.at(5, cap) == pytest.approx(0.05)  # half-way up the 10-step warm-up
    assert lr.at(10, cap) == lr.at(100, cap) == pytest.approx(0.1)
    assert lr.at(175, cap) == pytest.approx(0.05)  # half-way down the cosine over the last 50 steps
    assert lr.at(199, cap) < 0.001
    assert LearningRate(peak=0.01).at(123, cap) == 0.01  # the paper's constant rate
    with pytest.raises(ValueError, match="fraction"):
        LearningRate(peak=0.1, rampup=1.5)


def test_plateau_rule_stops_a_flat_history_and_keeps_a_falling_one():
    steps = torch.arange(20, dtype=torch.float64)
    history = torch.stack([torch.full_like(steps, 0.3), 1.0 / (1.0 + steps)])  # converged, still falling
    rule = StoppingRule(window=5, tolerance=1e-3)
    assert rule.plateaued(history).tolist() == [True, False]
    assert not rule.plateaued(history[:, :9]).any()  # fewer than two windows: too early to tell
    assert not StoppingRule().plateaued(history).any()  # window 0: the paper, never stops
    rising = torch.cat([torch.full((15,), 0.3), torch.full((5,), 0.5)])[None].double()
    assert not rule.plateaued(rising).any()  # a loss that jumped up is not on a plateau


def quadratic_problem(start: torch.Tensor, goal: torch.Tensor):
    """Per image a separate quadratic; image 0 starts at its optimum (a planted converged image)."""
    x = start.clone().requires_grad_(True)

    def loss(view, idx):
        value = (view["x"] - goal[idx]).square().sum(dim=1)
        return dict(total=value, mse=value)

    return x, loss


def test_converged_image_stops_and_never_moves_while_a_falling_one_runs_on():
    goal = torch.tensor([[1.0, -2.0], [3.0, 4.0], [-1.0, 0.5]])
    start = goal.clone()
    start[1:] = 0.0
    x, loss = quadratic_problem(start, goal)
    rule = StoppingRule(window=4, tolerance=1e-2)
    seen = []

    def project(variables):  # called after every update: record image 0's value each time
        seen.append(variables["x"][0].detach().clone())

    descent = descend({"x": x}, loss, cap=60, lr=LearningRate(peak=0.05), stopping=rule, project=project)
    assert descent.steps[0] == 2 * rule.window - 1  # stopped at its first chance: before the 8th update
    assert (descent.steps[1:] > descent.steps[0]).all()
    frozen = x[0].detach()
    stop = int(descent.steps[0])
    # image 0 stopped: later updates of the batch never moved it (restored after Adam's momentum step)
    assert all(torch.equal(v, frozen) for v in seen[stop + 1 :])
    assert (descent.traces["total"][0, stop:] == descent.traces["total"][0, stop]).all()
    assert descent.traces["total"].shape == (3, 60)


def test_each_image_descends_as_it_would_alone():
    goal = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    start = torch.zeros(5, 3)
    start[2] = goal[2]  # one image stops early, so the batch shrinks under the others
    rule, lr = StoppingRule(window=3, tolerance=1e-3), LearningRate(peak=0.1, rampup=0.1, rampdown=0.3)
    x, loss = quadratic_problem(start, goal)
    together = descend({"x": x}, loss, cap=40, lr=lr, stopping=rule)
    for i in range(5):
        xi, loss_i = quadratic_problem(start[i : i + 1], goal[i : i + 1])
        alone = descend({"x": xi}, loss_i, cap=40, lr=lr, stopping=rule)
        assert torch.equal(alone.steps, together.steps[i : i + 1])
        assert torch.allclose(xi.detach(), x.detach()[i : i + 1], atol=1e-6, rtol=0)


def test_a_stage_may_stop_an_image_by_its_own_test():
    goal = torch.tensor([[2.0], [2.0]])
    x, loss = quadratic_problem(torch.tensor([[1.9], [0.0]]), goal)
    descent = descend({"x": x}, loss, cap=10, lr=LearningRate(peak=0.01), finished=lambda t: t["total"] < 0.05)
    assert descent.steps.tolist() == [0, 10]


@pytest.fixture(scope="module")
def tiny():
    G = make_tiny_generator(resolution=16).double()
    x = G.synthesize(G.mapping(G.sample_z(4, seed=3).double())[:, None].expand(-1, G.num_ws, -1)).detach().clamp(-1, 1)
    return G, x


def test_inversion_with_stopping_does_not_depend_on_the_batch_size(tiny):
    G, x = tiny
    kw = dict(steps=30, lr=0.05, lr_rampup=0.1, lr_rampdown=0.25, stop_window=3, stop_tolerance=0.02)
    kw.update(perceptual=None, progress=False)
    together = invert(x, G, "W+", batch_size=None, **kw)
    one_by_one = invert(x, G, "W+", batch_size=1, **kw)
    assert torch.equal(together.steps["invert"], one_by_one.steps["invert"])
    assert 0 < int(together.steps["invert"].min()) < 30  # the rule did stop images, some before the cap
    assert torch.allclose(together.codes["w"], one_by_one.codes["w"], atol=1e-10, rtol=0)


def test_a_method_on_a_pivot_costs_its_pivots_steps_plus_its_own(tiny):
    G, x = tiny
    # a perceptual term: with none, PTI's threshold (distance <= stop_at) would stop every image at once
    kw = dict(steps=6, lr=0.05, stop_window=2, stop_tolerance=0.01, perceptual="stlpips-vgg", perceptual_size=32)
    kw.update(progress=False)
    G, x = copy.deepcopy(G).float(), x.float()  # the fixture is shared: convert a copy
    pivot = invert(x, G, "W", **kw)
    pti = invert(x, G, "PTI", pivot=pivot, method_settings=dict(steps=5, stop_at=0.0), **kw)
    assert torch.equal(pti.steps["invert"], pivot.steps["invert"])
    assert pti.steps["tuning"].tolist() == [5] * 4
    assert torch.equal(pti.image_steps(), pivot.steps["invert"] + 5)
    assert pti.losses["total"].shape[1] == 6 + 5
    assert math.isclose(float(pti.image_steps().sum()), float(pivot.image_steps().sum()) + 20)


def test_the_plateau_rule_waits_for_the_warm_up():
    # at a learning rate near 0 every loss is flat: the rule must not read that as a plateau
    goal = torch.ones(2, 3)
    x, loss = quadratic_problem(torch.zeros(2, 3), goal)
    lr = LearningRate(peak=0.05, rampup=0.5)
    descent = descend({"x": x}, loss, cap=20, lr=lr, stopping=StoppingRule(window=1, tolerance=0.5))
    assert (descent.steps >= 10).all()


def test_the_loops_adam_is_torch_adam():
    # the paper's protocol (constant rate, no stop) must be torch.optim.Adam's arithmetic, step for step
    goal = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x, loss = quadratic_problem(torch.zeros(3, 4, dtype=torch.float64), goal)
    descend({"x": x}, loss, cap=25, lr=LearningRate(peak=0.03))
    y = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([y], lr=0.03)
    for _ in range(25):
        adam.zero_grad()
        (y - goal).square().sum().backward()
        adam.step()
    assert torch.allclose(x.detach(), y.detach(), rtol=0, atol=1e-14)


def test_a_plateau_at_the_peak_rate_anneals_before_the_image_stops():
    # Adam at a rate of 0.5 circles a quadratic's optimum: the loss plateaus while the error is still ~rate-sized
    goal = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    rule = StoppingRule(window=5, tolerance=0.01)
    ends = {}
    for rampdown in (0.0, 0.5):
        x, loss = quadratic_problem(torch.zeros(1, 2, dtype=torch.float64), goal)
        lr = LearningRate(peak=0.5, rampdown=rampdown)
        descent = descend({"x": x}, loss, cap=400, lr=lr, stopping=rule)
        ends[rampdown] = (int(descent.steps[0]), float((x.detach() - goal).abs().max()))
    (stopped_at_peak, error_at_peak), (annealed_steps, annealed_error) = ends[0.0], ends[0.5]
    assert stopped_at_peak < 200  # plateaued long before the schedule's own ramp-down (step 200) would begin
    assert stopped_at_peak < annealed_steps <= stopped_at_peak + 200  # its own ramp-down: at most 200 more steps
    assert annealed_error < error_at_peak / 10


def test_keep_best_ends_each_image_on_its_lowest_loss_iterate():
    # Adam at a large constant rate oscillates around each optimum, so an image's last iterate is not its best
    goal = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    start = torch.tensor([[3.0, -2.0], [0.3, 0.4]])
    finals = {}
    for keep_best in (False, True):
        x, loss = quadratic_problem(start, goal)
        descent = descend({"x": x}, loss, cap=40, lr=LearningRate(peak=0.7), stopping=StoppingRule(keep_best=keep_best))
        finals[keep_best] = (x.detach().clone(), descent)
    last_x, last = finals[False]
    best_x, best = finals[True]
    assert torch.equal(last.traces["total"], best.traces["total"])  # the same descent: only the result differs
    returned = (best_x - goal).square().sum(dim=1)
    lowest = best.traces["total"].min(dim=1).values
    assert torch.equal(returned, lowest) and torch.equal(best.best, lowest)
    assert (lowest < best.traces["total"][:, -1]).any()  # the test can fail: the last iterate is worse somewhere
    assert last.best is None and not torch.equal(last_x, best_x)


def test_keep_best_with_stopping_is_batch_independent_and_returns_each_images_best():
    goal = torch.tensor([[1.0, -2.0], [3.0, 4.0], [-1.0, 0.5]])
    start = torch.tensor([[1.2, -2.1], [0.0, 0.0], [0.0, 0.0]])
    rule = StoppingRule(window=4, tolerance=1e-2, keep_best=True)
    x, loss = quadratic_problem(start, goal)
    together = descend({"x": x}, loss, cap=60, lr=LearningRate(peak=0.3), stopping=rule)
    alone = []
    for i in range(3):
        xi, loss_i = quadratic_problem(start[i : i + 1], goal[i : i + 1])
        descend({"x": xi}, loss_i, cap=60, lr=LearningRate(peak=0.3), stopping=rule)
        alone.append(xi.detach())
    assert torch.allclose(x.detach(), torch.cat(alone), rtol=0, atol=1e-6)
    assert torch.equal((x.detach() - goal).square().sum(dim=1), together.best)
