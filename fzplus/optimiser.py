"""One optimisation loop for every stage of every method: Adam under a learning-rate schedule, images that stop on
their plateau and leave the batch (issue 31; SPEC §5).

Why one loop: a comparison of spaces is a comparison of budgets unless every stage of every method ends the same
way. Each stage (the inversion, PTI's tuning, each of SAM's inversions) hands `descend` its variables, a per-image
loss and its own schedule and stopping rule; `descend` records, per image, the loss at every step and how many
updates the image took, its budget.

- Schedule (`LearningRate`): NVlabs' projector and SAM ramp the learning rate up linearly over the first
  `rampup` fraction of the step cap and down along a cosine over the last `rampdown` fraction; 0 and 0 is the
  paper's constant rate.
- Stopping (`StoppingRule`): after each step's loss, an image whose mean loss over the last `window` steps moved by
  less than `tolerance` (relative, up or down) against the `window` steps before has reached its plateau. If the
  schedule has a ramp-down, a plateau reached before it starts begins the image's own ramp-down there: the image's
  rate falls from the one it had along the same cosine over the same number of steps, and the image stops when that
  ends or when it plateaus again. Stopping at the peak rate would keep the noise of a high rate: measured on the mini
  Z+ rows, the budget-matched row (cap 158) stopped on plateaus at the peak rate and ended worse than the row capped
  at 128, whose images all reached the schedule's ramp-down. A plateau during the ramp-down stops the image at once. A
  stopped image takes no more updates, is no longer rendered, and its variables never change again. window 0 never
  stops (the paper). The rule looks at the steps after the warm-up only: at a rate near 0 every loss is flat. A stage
  may add its own test (PTI: stop once the perceptual distance is below a threshold).
- Result (`StoppingRule.keep_best`): each image's variables at the end are the last ones, or, with keep_best, the ones
  of its lowest loss seen. The plateau test compares window means, so a spike can make two windows' means agree: in
  the mini run at 95aad02 one F/W+ image (031796) spiked at the start of the ramp-down (perceptual 0.011 -> 0.021),
  stopped on that false plateau 4 steps later and kept codes 24 % above its best loss; one Z image ran to the cap
  14 % above its best after a spike. keep_best costs one copy of the variables and, since only the loss computed
  before each update is seen, gives up the last update of an image that ran to the cap. The traces stay the losses
  of the iterates as they were; `Descent.best` records the loss of the variables returned.
- Per-image independence: the batch loss is the sum of the images' losses and Adam is elementwise, so an image's
  updates are the ones it would get alone. The loop's Adam (`RowAdam`, torch.optim.Adam's arithmetic) takes a rate
  per image and updates only the rows still running, so results do not depend on which images share a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from fzplus.settings import setting

LOSS_TERMS = ("total", "mse", "perceptual", "reg")


@dataclass(frozen=True)
class LearningRate:
    """peak lr, ramped up over the first `rampup` and down (cosine) over the last `rampdown` fraction of the cap."""

    peak: float
    rampup: float = 0.0
    rampdown: float = 0.0

    def __post_init__(self):
        if not self.peak > 0:
            raise ValueError(f"the learning rate must be > 0, got {self.peak}")
        for name in ("rampup", "rampdown"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"lr {name} is a fraction of the step cap in [0, 1], got {getattr(self, name)}")

    def at(self, step: int, cap: int) -> float:
        """The rate of update `step` (0-based) of a stage capped at `cap` steps."""
        t = step / max(cap, 1)
        scale = 1.0
        if self.rampdown > 0:
            down = min(1.0, (1.0 - t) / self.rampdown)
            scale *= 0.5 - 0.5 * math.cos(down * math.pi)
        if self.rampup > 0:
            scale *= min(1.0, t / self.rampup)
        return self.peak * scale

    def rampdown_steps(self, cap: int) -> float:
        return self.rampdown * cap

    def annealed(self, step: int, cap: int, start: int) -> float:
        """The rate of update `step` of an image whose own ramp-down began at step `start` (its plateau, before the
        schedule's ramp-down): from the rate it had at `start` down the schedule's cosine, over as many steps."""
        length = self.rampdown_steps(cap)
        down = min(1.0, max(0.0, (start + length - step) / length))
        return self.at(start, cap) * (0.5 - 0.5 * math.cos(down * math.pi))


@dataclass(frozen=True)
class StoppingRule:
    """An image stops once its windowed loss moved (fell or rose) by less than `tolerance` (relative); with
    `keep_best` it ends on the variables of its lowest loss seen, else on its last ones."""

    window: int = 0
    tolerance: float = 0.0
    keep_best: bool = False

    def __post_init__(self):
        if self.window < 0 or self.tolerance < 0:
            raise ValueError(f"stopping window and tolerance must be >= 0, got {self.window}, {self.tolerance}")

    def plateaued(self, history: torch.Tensor) -> torch.Tensor:
        """history [n, t] of each image's loss so far -> [n] bool: on its plateau."""
        n, t = history.shape
        if self.window == 0 or t < 2 * self.window:
            return torch.zeros(n, dtype=torch.bool, device=history.device)
        recent = history[:, -self.window :].mean(dim=1)
        before = history[:, -2 * self.window : -self.window].mean(dim=1)
        # flat, not merely not falling: a rise (a spike at a high rate) is no plateau, and stopping there would keep
        # the spiked codes (mini, b1b1518 rule: 4 of 12 in-domain F/Z+ images ended 5-61 % above their best loss)
        return (before - recent).abs() <= self.tolerance * before.abs()


@dataclass(frozen=True)
class StoppingSettings:
    """The stopping rule's two settings, shared by every stage's settings class (inherit it)."""

    stop_window: int = setting(
        0,
        minimum=0,
        description="an image stops once its mean loss over this many steps moved by less than "
        "stop_tolerance against the window before; 0 = never (the paper: every image runs the whole cap)",
    )
    stop_tolerance: float = setting(
        0.0, minimum=0, description="relative change (fall or rise) of the windowed loss that counts as a plateau"
    )
    keep_best: bool = setting(
        False,
        description="each image ends on the variables of its lowest loss seen in the stage, not its last ones "
        "(false: the paper's, every image's last iterate)",
    )

    def stopping_rule(self) -> StoppingRule:
        return StoppingRule(window=self.stop_window, tolerance=self.stop_tolerance, keep_best=self.keep_best)


@dataclass
class Descent:
    """A stage's record: traces {term: [N, cap]} (the loss before each update; a stopped image repeats its last
    value), steps [N] (updates each image took: its generator forward and backward passes) and best [N] (the total
    loss of the variables returned, with keep_best; else None)."""

    traces: dict[str, torch.Tensor]
    steps: torch.Tensor
    best: torch.Tensor | None = None

    @staticmethod
    def joined(parts: list[Descent]) -> Descent:
        """Several stages of the same images run one after another: the steps add up; traces and best are the last's."""
        return Descent(traces=parts[-1].traces, steps=sum(p.steps for p in parts), best=parts[-1].best)


class RowAdam:
    """Adam with torch.optim.Adam's arithmetic (single-tensor path) and one learning rate per image row, updating
    only the rows it is given. Every row it updates has taken the same number of updates: rows only ever leave."""

    def __init__(self, variables: dict[str, torch.Tensor], *, betas: tuple[float, float], eps: float):
        self.betas, self.eps, self.updates = betas, eps, 0
        self.moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in variables.items()}

    @torch.no_grad()
    def step(self, variables: dict[str, torch.Tensor], rows: torch.Tensor, rates: torch.Tensor) -> None:
        """rows [m] indices to update with rates [m] (float64, as torch's Python-float rate)."""
        (b1, b2), self.updates = self.betas, self.updates + 1
        correction1, correction2_sqrt = 1 - b1**self.updates, (1 - b2**self.updates) ** 0.5
        for k, v in variables.items():
            m_all, s_all = self.moments[k]
            grad = v.grad[rows]
            m = m_all[rows].lerp_(grad, 1 - b1)
            s = s_all[rows].mul_(b2).addcmul_(grad, grad, value=1 - b2)
            m_all[rows], s_all[rows] = m, s
            denom = (s.sqrt() / correction2_sqrt).add_(self.eps)
            step_size = (-rates / correction1).to(v.dtype).reshape(-1, *[1] * (v.ndim - 1))
            v[rows] = v[rows] + step_size * m / denom


# (variables of the active images, their indices) -> per-image loss terms [n] (LOSS_TERMS, "total" minimised)
LossFunction = Callable[[dict[str, torch.Tensor], torch.Tensor], Mapping[str, torch.Tensor]]


def descend(
    variables: dict[str, torch.Tensor],
    loss: LossFunction,
    *,
    cap: int,
    lr: LearningRate,
    stopping: StoppingRule = StoppingRule(),
    finished: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None = None,
    project: Callable[[dict[str, torch.Tensor]], None] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    progress: bool = False,
    desc: str = "",
) -> Descent:
    """Minimise the sum over images of loss(...)["total"] over `variables` ({name: [N, ...]} leaf tensors with
    requires_grad, updated in place), at most `cap` Adam steps. `finished(terms)` -> [n] bool: a stage's own
    reason to stop an image at once, before its update (checked with the loss just computed). `project(variables)`:
    the space's projection after every update (in place, under no_grad), e.g. the retraction of Z codes."""
    first = next(iter(variables.values()))
    n, device = first.shape[0], first.device
    for name, v in variables.items():
        if v.shape[0] != n or not v.requires_grad:
            raise ValueError(f"variable {name!r}: expected a leaf [N={n}, ...] requiring grad, got {tuple(v.shape)}")
    optimizer = RowAdam(variables, betas=betas, eps=eps)
    active = torch.ones(n, dtype=torch.bool, device=device)
    steps = torch.zeros(n, dtype=torch.long, device=device)
    annealing_from: dict[int, int] = {}  # image -> the step its own ramp-down began (its plateau)
    last = {t: first.new_zeros(n) for t in LOSS_TERMS}
    best_loss = first.new_full((n,), math.inf) if stopping.keep_best else None
    best = {k: v.detach().clone() for k, v in variables.items()} if stopping.keep_best else None
    trace: dict[str, list[torch.Tensor]] = {t: [] for t in LOSS_TERMS}
    warm = math.ceil(lr.rampup * cap)  # the first step the plateau rule may look at
    rampdown_start = cap - lr.rampdown_steps(cap)  # the schedule's own ramp-down
    bar = tqdm(range(cap), desc=desc, disable=not progress, leave=False)
    for step in bar:
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            for name in LOSS_TERMS:
                trace[name].append(last[name].clone())
            continue
        everyone = len(idx) == n
        view = variables if everyone else {k: v[idx] for k, v in variables.items()}
        terms = loss(view, idx)
        for name in LOSS_TERMS:
            value = terms.get(name)
            last[name] = last[name].index_put((idx,), value.detach() if value is not None else last[name][idx] * 0)
            trace[name].append(last[name].clone())
        if best is not None:  # the loss just computed is the one of the variables as they are, before this update
            better = terms["total"].detach() < best_loss[idx]
            rows = idx[better]
            best_loss[rows] = terms["total"].detach()[better]
            with torch.no_grad():
                for k, v in variables.items():
                    best[k][rows] = v[rows]
        if stopping.window and step >= warm:  # the rule needs its last two windows after the warm-up
            recent = trace["total"][max(warm, step + 1 - 2 * stopping.window) :]
            plateau = stopping.plateaued(torch.stack(recent, dim=1)[idx])
        else:
            plateau = torch.zeros(len(idx), dtype=torch.bool, device=device)
        stop = torch.zeros_like(plateau) if finished is None else finished(terms).clone()
        for k, i in enumerate(idx.tolist()):
            if i in annealing_from:  # a plateau within its ramp-down, or the ramp-down's end, ends the image
                since = step - annealing_from[i]
                again = plateau[k] and since >= 2 * stopping.window  # both windows inside the ramp-down
                stop[k] = stop[k] | again | (since >= lr.rampdown_steps(cap))
            elif plateau[k]:
                if step < rampdown_start and lr.rampdown > 0:
                    annealing_from[i] = step
                else:
                    stop[k] = True
        active[idx[stop]] = False
        going = idx[~stop]
        if len(going):
            rates = [
                lr.annealed(step, cap, annealing_from[i]) if i in annealing_from else lr.at(step, cap)
                for i in going.tolist()
            ]
            for v in variables.values():
                v.grad = None
            terms["total"][~stop].sum().backward()
            optimizer.step(variables, going, torch.tensor(rates, dtype=torch.float64, device=device))
            steps[going] += 1
            if project is not None:  # a projection must not move a stopped image either (round-off included)
                with torch.no_grad():
                    resting = ~active
                    kept = {k: v[resting].clone() for k, v in variables.items()}
                    project(variables)
                    for k, v in variables.items():
                        v[resting] = kept[k]
        if progress and step % 10 == 0:
            bar.set_postfix(active=int(active.sum()), loss=f"{last['total'].mean().item():.5f}")
    if best is not None:
        with torch.no_grad():
            for k, v in variables.items():
                v.copy_(best[k])
    traces = {t: torch.stack(v, dim=1) if v else first.new_zeros(n, 0) for t, v in trace.items()}
    return Descent(traces={t: v.detach() for t, v in traces.items()}, steps=steps, best=best_loss)
