"""The latent-space plugin contract (SPEC §4).

A space is an object that says, for a batch of N images:
- which free variables it optimises and how they start (`variables`, `init_codes`);
- how they become generator inputs (`generator_inputs`: ws or S-space styles, plus the base code f for
  F spaces) and so an image (`render`);
- what is done to them after every optimiser step (`project_`) and what they cost (`regularizer`);
- how an edit direction moves them (`apply_direction`), in which domain the direction lives (`domain`,
  "Z" or "W"), and which ws layers the edit reaches (`edited_layers`: all of them for a standalone space,
  layers >= M for an F space, M = generator.first_detail_layer(base_size)).

Codes are a dict of batch-first tensors, one entry per free variable: `f` [N, C, s, s] for F spaces, `z`
or `w` [N, 512] (one code for all layers) or [N, L, 512] (one code per layer it feeds), `s` [N, sum C_l]
(S-space styles of the layers it feeds, concatenated in `synthesis.layer_specs` order).

A method (an inversion procedure beyond a latent space: PTI, IDInvert, SAM, ...) is a space too, registered
and compared the same way. Everything the pipeline needs to know about a plugin is declared on it; the rules,
stages, config schema and report read these declarations and probe nothing else:
- artefacts it needs besides the generator and the targets: `needs_pn_stats` (the P_N statistics),
  `encoder_kind` (an encoder of fzplus.encoders.KINDS; `init_codes` receives it, the context carries it for
  `regularizer`, e.g. IDInvert's domain term, spaces/idinvert.py), `pivot` (a space whose inversion is this
  method's first stage: PTI, SAM);
- its settings: `settings_class`, a frozen dataclass whose fields are declared with fzplus.settings.setting
  (default, bounds, description), read from the config section `inversion.<settings_key>`. The schema of that
  section is generated from the class, so a new method's settings are validated (a misspelt key is refused)
  with no schema edit. The engine hands the instance to the space as `ctx.settings`;
- a second stage after the code inversion (`refine`, adding `refined_variables` to the codes, e.g. PTI's
  tuned generator weights, spaces/_tuning.py);
- the extra figures it draws (`figures`, names of FIGURE_KINDS: SAM's per-segment latent maps);
- the generator architectures it is defined for (`architectures`, keys of fzplus.generator.interface.ARCHITECTURES;
  default all of them) and, when that is not all, why not the others (`architecture_note`). Planning
  (fzplus.planning.space_architecture_problems) refuses a configured space the run's generator lacks, with that note;
  the inversion engine refuses it too (`check_generator`), for callers that plan nothing.

Everything that is not a code but changes what a code means (base size, truncation, P_N statistics, the
method's settings) is in a `SpaceContext`, built by the inversion engine (or by `render` / `edit`).
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from fzplus.encoders import KINDS as ENCODER_KINDS
from fzplus.generator.interface import ARCHITECTURES
from fzplus.settings import schema_of, settings_from

DOMAINS = ("Z", "W")
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
REQUIRED_FIELDS = ("name", "slug", "domain", "variables", "uses_base_code", "applies_truncation", "description")
# the extra figures a plugin may declare, each with the methods the figure asks of the plugin
# (benchmarks.report.figures.SPACE_FIGURES draws them)
FIGURE_KINDS = {"latent_maps": ("candidate_names",)}

# images [N, 3, R, R] in [-1, 1] at the generator's resolution -> base code f [N, C, s, s]
Encoder = Callable[[torch.Tensor], torch.Tensor]


class RegistrationError(ValueError):
    """A plugin is malformed or clashes with another one."""


@dataclass(frozen=True)
class SpaceContext:
    """What a code needs besides itself to become an image.

    base_size: spatial size s of the base code f (F spaces only; None for standalone spaces).
    truncation_psi / truncation_cutoff: truncation of the mapped ws towards w_avg on layers [0, cutoff),
        applied only by spaces whose `applies_truncation` is True (those the authors' scripts truncate).
    pn_stats: P_N statistics (fzplus.pn_stats.PNStats), needed by the spaces that declare `needs_pn_stats`.
    encoder: the encoder the space's `encoder_kind` names (None when it names none, or none was given).
    settings: the space's own settings (an instance of its `settings_class`; None for a space without).
    """

    generator: Any  # fzplus.generator.Generator (not imported: plugins stay importable on their own)
    base_size: int | None = None
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    pn_stats: Any = None
    encoder: Any = None
    settings: Any = None

    @property
    def first_detail_layer(self) -> int:
        """M: first ws index after the split at base_size."""
        if self.base_size is None:
            raise ValueError("this space needs a base code size: pass base_size (e.g. 16 for a 1024 generator)")
        return self.generator.first_detail_layer(self.base_size)


class GeneratorInputs(NamedTuple):
    """ws [N, num_ws, w_dim] or styles (one [N, C_l] per layer fed); f [N, C, s, s] for F spaces."""

    ws: torch.Tensor | None = None
    styles: Sequence[torch.Tensor] | None = None
    f: torch.Tensor | None = None


def sphere_radius(dim: int) -> float:
    """Radius of the sphere Z codes live on: sqrt(dim), where N(0, I) codes concentrate."""
    return math.sqrt(dim)


def retract_to_sphere(z: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 5: z_i <- sqrt(D) z_i / |z_i| for every code along the last dimension."""
    return z * (sphere_radius(z.shape[-1]) / z.norm(dim=-1, keepdim=True))


class LatentSpace(abc.ABC):
    """Base class of every plugin. Subclasses set the class fields (or pass them to __init__)."""

    name: str = ""  # as in the paper: "F/Z+"
    slug: str = ""  # filesystem-safe: "f_z_plus"
    domain: str = ""  # edit-direction domain: "Z" or "W"
    variables: tuple[str, ...] = ()  # keys of the codes dict
    uses_base_code: bool | None = None  # F space: optimises f and feeds only layers >= M
    applies_truncation: bool | None = None  # follows the authors' scripts (see each family)
    description: str = ""
    refined_variables: tuple[str, ...] = ()  # codes added by `refine` (methods with a second stage)
    # the method's own settings: a frozen dataclass of fzplus.settings.setting fields,
    # in config inversion.<settings_key>
    settings_key: str | None = None
    settings_class: type | None = None
    needs_pn_stats: bool = False  # the run's P_N statistics reach the space as ctx.pn_stats
    # a method whose first stage IS this space's inversion (PTI, SAM): the engine can take that inversion as given
    pivot: LatentSpace | None = None
    figures: tuple[str, ...] = ()  # extra figures it draws, names of FIGURE_KINDS
    # the generator architectures it is defined for (keys of ARCHITECTURES), and why not the others where that is
    # not all of them: the message planning shows a user whose generator it refuses
    architectures: tuple[str, ...] = tuple(ARCHITECTURES)
    architecture_note: str = ""

    @property
    def encoder_kind(self) -> str | None:
        """The encoder the run provides to this space (one of ENCODER_KINDS), or None. Default: the base-code
        encoder for F spaces; a method that starts from its own encoder sets the class field."""
        return "base-code" if self.uses_base_code else None

    @property
    def has_second_stage(self) -> bool:
        """Whether the plugin implements `refine`, a second stage the engine runs after the code inversion."""
        return type(self).refine is not LatentSpace.refine

    def architecture_problem(self, architecture: str) -> str | None:
        """Why the space cannot run on a generator of `architecture` (a key of ARCHITECTURES), or None if it can."""
        if architecture in self.architectures:
            return None
        defined = ", ".join(ARCHITECTURES[a] for a in self.architectures)
        return (
            f"space {self.name!r} is not defined for {ARCHITECTURES.get(architecture, architecture)} generators: "
            f"{self.architecture_note.strip().rstrip('.')}. "
            f"Drop it from inversion.spaces in the config (it is defined for {defined})."
        )

    def check_generator(self, generator) -> None:
        """Raise ValueError (architecture_problem's message) if the space is not defined for this generator."""
        problem = self.architecture_problem(generator.architecture)
        if problem is not None:
            raise ValueError(problem)

    def settings_for(self, values: Mapping[str, Any] | Any | None) -> Any:
        """The space's settings from its config section (None: the class defaults; an instance passes through);
        None for a space that declares no settings, which then refuses any."""
        if self.settings_class is None:
            if values:
                raise ValueError(f"space {self.name!r} has no settings of its own; got {values!r}")
            return None
        return settings_from(self.settings_class, values, what=f"inversion.{self.settings_key}")

    # ---- to implement ------------------------------------------------------------------------------
    @abc.abstractmethod
    def init_codes(
        self, targets: torch.Tensor, ctx: SpaceContext, *, image_seeds: Sequence[int], encoder: Encoder | None = None
    ) -> dict[str, torch.Tensor]:
        """Starting codes for targets [N, 3, R, R]; image_seeds: one seed per image (random inits)."""

    @abc.abstractmethod
    def generator_inputs(self, codes: dict[str, torch.Tensor], ctx: SpaceContext) -> GeneratorInputs:
        """Differentiable map from codes to generator inputs."""

    @abc.abstractmethod
    def apply_direction(
        self, codes: dict[str, torch.Tensor], direction: torch.Tensor, alpha: float, ctx: SpaceContext
    ) -> dict[str, torch.Tensor]:
        """New codes moved by alpha * direction ([D], in `domain`) on the edited layers."""

    # ---- defaults ----------------------------------------------------------------------------------
    def project_(self, codes: dict[str, torch.Tensor]) -> None:  # noqa: B027 (an optional hook; unconstrained by default)
        """In place, after every optimiser step. Default: unconstrained."""

    def regularizer(self, codes: dict[str, torch.Tensor], ctx: SpaceContext) -> torch.Tensor:
        """Weighted per-image penalty [N]. Default: none."""
        first = next(iter(codes.values()))
        return first.new_zeros(first.shape[0])

    def codes_for_sample(self, z: torch.Tensor, ctx: SpaceContext) -> dict[str, torch.Tensor]:
        """The codes that render the generator's own sample of z [N, z_dim] (its ws truncated as the context
        says): the true codes of an in-domain target, for ground-truth edit fidelity. Optional: without it
        a space runs only with editing.ground_truth.images: 0."""
        raise NotImplementedError(
            f"space {self.name!r} does not say which of its codes render a generated sample; "
            "implement codes_for_sample for ground-truth edit fidelity, or set editing.ground_truth.images: 0"
        )

    def refine(
        self,
        codes: dict[str, torch.Tensor],
        ctx: SpaceContext,
        *,
        image_losses: Callable,
        settings: Any = None,
        progress: bool = False,
        desc: str = "",
    ) -> tuple[dict[str, torch.Tensor], Any]:
        """A method's second stage, run by the engine after the last inversion step when the plugin implements it
        (`has_second_stage`): (codes, with `refined_variables` added if it declares any; the stage's
        fzplus.optimiser.Descent: loss traces {total, mse, perceptual, reg: [N, steps]} and the steps each
        image took, its budget). Run every optimisation loop through fzplus.optimiser.descend, so the
        stage follows the run's schedule and stopping rule like every other.
        image_losses(images [n, 3, R, R], index [n]) gives the MSE and perceptual distance [n] of the images
        of targets[index] (fzplus.inversion.losses.ImageLosses: also `.targets` and per-pixel `.maps`);
        settings: the space's settings (ctx.settings: its `settings_class` from the run's inversion.<settings_key>)."""
        raise NotImplementedError(f"space {self.name!r} has no second stage")

    def second_stage_cap(self, settings: Any, generator) -> int:
        """The most steps `refine` may take per image (every optimisation loop of it added up), with the space's
        settings: the extra budget a budget-matched pivot row gets (benchmarks: its pivot space run for the method's
        whole budget). 0 for a space without a second stage; a plugin with one must say."""
        if self.has_second_stage:
            raise NotImplementedError(f"space {self.name!r} has a second stage but does not give its step cap")
        return 0

    def edited_layers(self, ctx: SpaceContext) -> range:
        """ws indices an edit reaches (= those the codes feed): all for standalone spaces, [M, num_ws) for F spaces."""
        start = ctx.first_detail_layer if self.uses_base_code else 0
        return range(start, ctx.generator.num_ws)

    def render(self, codes: dict[str, torch.Tensor], ctx: SpaceContext) -> torch.Tensor:
        """codes -> images [N, 3, R, R]. F spaces pass a bare f: the RGB skip restarts at the split."""
        inputs = self.generator_inputs(codes, ctx)
        G = ctx.generator
        if inputs.f is None:
            return G.synthesize(inputs.ws, styles=inputs.styles)
        return G.synthesize_from(inputs.f, inputs.ws, styles=inputs.styles)

    def __repr__(self) -> str:
        return f"<latent space {self.name!r} ({self.slug})>"


def validate_space(space: object, *, source: str) -> LatentSpace:
    """Check a plugin's declared fields; raise RegistrationError naming `source` and the fix."""
    if not isinstance(space, LatentSpace):
        raise RegistrationError(
            f"{source}: SPACE must be an instance of spaces.base.LatentSpace, got {type(space).__name__}"
        )
    missing = [f for f in REQUIRED_FIELDS if getattr(space, f, None) in (None, "", ())]
    if missing:
        raise RegistrationError(
            f"{source}: space {space.name or '<unnamed>'!r} lacks required field(s) {missing}; "
            f"set them on the plugin (see spaces/base.py, REQUIRED_FIELDS)"
        )
    if not SLUG_PATTERN.match(space.slug):
        raise RegistrationError(
            f"{source}: slug {space.slug!r} is not filesystem-safe; use lowercase letters, digits and '_'"
        )
    if space.domain not in DOMAINS:
        raise RegistrationError(f"{source}: domain {space.domain!r} must be one of {DOMAINS}")
    if not all(isinstance(v, str) and v for v in space.variables):
        raise RegistrationError(f"{source}: variables must be a tuple of non-empty names, got {space.variables!r}")
    if space.encoder_kind not in (None, *ENCODER_KINDS):
        raise RegistrationError(
            f"{source}: encoder_kind {space.encoder_kind!r} must be None or one of {list(ENCODER_KINDS)}"
        )
    if (space.settings_key is None) != (space.settings_class is None):
        raise RegistrationError(
            f"{source}: set both settings_key (the config section inversion.<key>) and settings_class "
            f"(a dataclass of fzplus.settings.setting fields), or neither"
        )
    if space.settings_key is not None:
        if not SLUG_PATTERN.match(space.settings_key):
            raise RegistrationError(
                f"{source}: settings_key {space.settings_key!r} must be lowercase letters, digits and '_'"
            )
        try:
            schema_of(space.settings_class)
        except TypeError as error:
            raise RegistrationError(f"{source}: settings_class of {space.name!r}: {error}") from error
    if space.pivot is not None and not isinstance(space.pivot, LatentSpace):
        raise RegistrationError(f"{source}: pivot must be a LatentSpace, got {type(space.pivot).__name__}")
    architectures = space.architectures
    if (
        not isinstance(architectures, tuple)
        or not architectures
        or len(set(architectures)) != len(architectures)
        or not set(architectures) <= set(ARCHITECTURES)
    ):
        raise RegistrationError(
            f"{source}: architectures {architectures!r} must be a tuple of distinct names of {list(ARCHITECTURES)}"
        )
    if set(architectures) != set(ARCHITECTURES) and not space.architecture_note.strip():
        raise RegistrationError(
            f"{source}: {space.name!r} is defined for {list(architectures)} only; say why not for the others in "
            "architecture_note (planning shows it to the user whose generator it refuses)"
        )
    if space.pivot is not None and not set(architectures) <= set(space.pivot.architectures):
        raise RegistrationError(
            f"{source}: {space.name!r} is defined for {list(architectures)}, but its pivot {space.pivot.name!r} only "
            f"for {list(space.pivot.architectures)}; a method runs on what its pivot runs on"
        )
    if space.refined_variables and not space.has_second_stage:
        raise RegistrationError(
            f"{source}: {space.name!r} declares refined_variables {space.refined_variables} but implements no refine"
        )
    if space.has_second_stage and type(space).second_stage_cap is LatentSpace.second_stage_cap:
        raise RegistrationError(
            f"{source}: {space.name!r} implements refine but not second_stage_cap (the most steps refine takes)"
        )
    for figure in space.figures:
        if figure not in FIGURE_KINDS:
            raise RegistrationError(f"{source}: figure {figure!r} is not one of {sorted(FIGURE_KINDS)}")
        missing = [m for m in FIGURE_KINDS[figure] if not callable(getattr(space, m, None))]
        if missing:
            raise RegistrationError(f"{source}: the {figure!r} figure needs the plugin to implement {missing}")
    if space.uses_base_code and "f" not in space.variables:
        raise RegistrationError(f"{source}: an F space must list the base code 'f' among its variables")
    return space


def sample_ws(z: torch.Tensor, ctx: SpaceContext) -> torch.Tensor:
    """ws [N, num_ws, w_dim] of the generator's sample of z [N, z_dim], truncated as the context says."""
    G = ctx.generator
    ws = G.mapping(z)[:, None].repeat(1, G.num_ws, 1)
    return G.truncate(ws, psi=ctx.truncation_psi, cutoff=ctx.truncation_cutoff)


def with_true_base_code(
    codes: dict[str, torch.Tensor], ws: torch.Tensor, ctx: SpaceContext, *, uses_base_code: bool
) -> dict[str, torch.Tensor]:
    """F spaces: add the true f of a sample with ws [N, num_ws, w_dim], the generator's features at the split."""
    if uses_base_code:
        codes["f"] = ctx.generator.features(ws, at=ctx.base_size).f
    return codes


def base_code_init(targets: torch.Tensor, ctx: SpaceContext, *, encoder: Encoder | None) -> torch.Tensor:
    """f0 [N, C, s, s]: the encoder's output, else the generator's features of w_avg (the mean feature map)."""
    G, s = ctx.generator, ctx.base_size
    expected = (G.base_channels(s), s, s)
    n = targets.shape[0]
    with torch.no_grad():
        if encoder is None:
            from fzplus.encoders.base_code import mean_feature_map  # plugins stay importable without the encoder module

            return mean_feature_map(G, base_size=s).expand(n, *expected).to(targets.dtype).clone()
        if isinstance(encoder, torch.nn.Module) and encoder.training:
            raise ValueError(
                "the encoder is in training mode; "
                "call encoder.eval() so that per-image results do not depend on the batch"
            )
        f = encoder(targets)
    if tuple(f.shape) != (n, *expected):
        raise ValueError(
            f"encoder returned {tuple(f.shape)}; base size {s} needs [N, {expected[0]}, {s}, {s}] "
            f"(train the encoder for this generator and base size)"
        )
    return f.detach().to(targets.dtype)
