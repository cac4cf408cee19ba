"""Every space plugin on StyleGAN1 (issue 28): each registered space inverts a tiny StyleGAN1 through the engine call
of the pipeline's invert stage, or planning refuses it with a message that names it (space_architecture_problems of
fzplus.config, which the Snakefile runs). Also: the plugins' architecture declarations are checked at registration,
planning reads the architecture from the checkpoint, the engine refuses what planning would, and IDInvert refuses
an encoder made for a StyleGAN2."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import spaces
from conftest import encoder_for, make_domain_encoder, make_tiny_generator
from fzplus.assets import REPO_ROOT
from fzplus.config import load_config
from fzplus.encoders.base_code import EncoderFileError
from fzplus.encoders.domain import encode_ws, load_domain_encoder, save_domain_encoder
from fzplus.faces import parsing as face_parsing
from fzplus.faces.parsing import SEGMENTS, FaceSegments
from fzplus.generator import save_generator
from fzplus.inversion import invert
from fzplus.perceptual import build_perceptual
from fzplus.planning import generator_architecture, space_architecture_problems
from fzplus.pn_stats import compute_pn_stats
from spaces._families import SSpace, WSpace
from spaces._sam import residual_synthesis
from spaces._tuning import TunedSpace, parameter_count, tuned_synthesis
from spaces.base import RegistrationError, validate_space

SIZE, BASE, STEPS, N = 16, 8, 3, 2
PARSER = "stylegan1-test-halves"
# The outcome decided for each space (issue 28): none is refused, every plugin being defined on StyleGAN1 (S on
# AdaIN's styles: spaces/s.py). A space restricted to other architectures must be listed here with its reason.
REFUSED_ON_STYLEGAN1: dict[str, str] = {}
SECOND_STAGE_SETTINGS = {
    "tuning": dict(steps=2, lr=1e-3, stop_at=0.0),
    "sam": dict(residual_sizes=[8], steps=2, tau=0.0, parser=PARSER),  # tau 0: F8 wins every segment
}


def halves(images):
    """A planted face parser: the top and the bottom half of every image are the two segments."""
    labels = torch.zeros(images.shape[0], images.shape[-1], images.shape[-1], dtype=torch.long)
    labels[:, images.shape[-1] // 2 :] = 1
    return FaceSegments(labels, np.ones(images.shape[0], dtype=bool))


if PARSER not in face_parsing.PARSERS:
    face_parsing.register_parser(PARSER, halves)


@pytest.fixture(scope="module")
def generator(make_tiny_stylegan1):
    return make_tiny_stylegan1(resolution=SIZE)


@pytest.fixture(scope="module")
def targets():
    """Out-of-domain targets: a StyleGAN2's images."""
    other = make_tiny_generator(resolution=SIZE, seed=1)
    with torch.no_grad():
        return other(torch.randn(N, 512, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


@pytest.fixture(scope="module")
def stlpips():
    return build_perceptual("stlpips-vgg")


@pytest.fixture(scope="module")
def pn_stats(generator):
    return compute_pn_stats(generator, num_samples=1024, seed=0, batch_size=1024, progress=False)


def ci_config(tmp_path, generator):
    """The ci profile with `generator` saved as its checkpoint."""
    path = tmp_path / f"{generator.architecture}.pt"
    save_generator(generator, path)
    return load_config("ci", overrides={"generator.random": None, "generator.checkpoint": str(path)})


def with_spaces(config, names):
    """The loaded config with inversion.spaces = names (load_config would also ask statistics.pairs to follow)."""
    return {**config, "inversion": {**config["inversion"], "spaces": list(names)}}


@pytest.fixture(scope="module")
def stylegan1_config(tmp_path_factory, generator):
    return ci_config(tmp_path_factory.mktemp("stylegan1"), generator)


def assert_refused_while_planning(name, config):
    """Planning, as the Snakefile runs it, refuses the space with a message naming it, StyleGAN1 and the fix."""
    problems = space_architecture_problems(with_spaces(config, [name]))
    assert len(problems) == 1, problems
    assert f"space {name!r} is not defined for StyleGAN1 generators" in problems[0]
    assert "Drop it from inversion.spaces" in problems[0]


def generator_output(codes, G):
    """The generator's own image of codes, built here from what each variable means (not through the plugin):
    z mapped, one code repeated over the layers it feeds, F spaces finished from f, styles split 2 C_l per layer,
    tuned weights added to a copy of the synthesis network."""
    first = G.first_detail_layer(BASE) if "f" in codes else 0
    if "s" in codes:
        dims = [2 * G.synthesis.channels[spec.block] for spec in G.synthesis.layer_specs[first:]]
        styles = list(torch.split(codes["s"], dims, dim=1))
        return G.synthesize_from(codes["f"], styles=styles) if "f" in codes else G.synthesize(styles=styles)
    if "z" in codes:
        z = codes["z"]
        w = G.mapping(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], G.w_dim)
    else:
        w = codes["w"]
    ws = w if w.ndim == 3 else w[:, None].expand(-1, G.num_ws - first, -1)
    if "f" in codes:
        return G.synthesize_from(codes["f"], ws)
    if "delta" in codes:
        tuned = []
        for i in range(ws.shape[0]):
            copy_ = copy.deepcopy(G)
            params = list(copy_.synthesis.parameters())
            pieces = codes["delta"][i].float().split([p.numel() for p in params])
            for p, piece in zip(params, pieces):
                p.add_(piece.view_as(p))
            tuned.append(copy_.synthesize(ws[i : i + 1]))
        return torch.cat(tuned)
    return G.synthesize(ws)


def expected_shapes(space, G) -> dict[str, tuple[int, ...]]:
    """Each variable's shape from the generator's sizes (a method's pivot codes are its pivot space's)."""
    layer_space = space.pivot or space
    first = G.first_detail_layer(BASE) if space.uses_base_code else 0
    shapes = {}
    for var in space.variables:
        if var == "f":
            shapes[var] = (N, G.base_channels(BASE), BASE, BASE)
        elif var == "s":
            shapes[var] = (N, sum(2 * G.synthesis.channels[spec.block] for spec in G.synthesis.layer_specs[first:]))
        else:
            dim = G.z_dim if var == "z" else G.w_dim
            shapes[var] = (N, G.num_ws - first, dim) if layer_space.per_layer else (N, dim)
    if "delta" in space.refined_variables:
        shapes["delta"] = (N, sum(p.numel() for p in G.synthesis.parameters()))
    if "residuals" in space.refined_variables:
        shapes.update(
            residuals=(N, G.synthesis.channels[8] * 8 * 8),
            residual_sizes=(N, 1),
            latent_map=(N, SIZE, SIZE),
            segment_distances=(N, 2, len(SEGMENTS)),
        )
    return shapes


@pytest.mark.parametrize("name", spaces.order_spaces(spaces.names()))
def test_every_space_inverts_a_stylegan1_or_is_refused_while_planning(
    name, generator, targets, stlpips, pn_stats, stylegan1_config
):
    space = spaces.get(name)
    assert ("stylegan1" not in space.architectures) == (name in REFUSED_ON_STYLEGAN1)
    if name in REFUSED_ON_STYLEGAN1:
        assert_refused_while_planning(name, stylegan1_config)
        return
    G = generator
    result = invert(
        targets,
        G,
        space,
        steps=STEPS,
        perceptual=stlpips,
        perceptual_size=32,
        base_size=BASE,
        pn_stats=pn_stats if space.needs_pn_stats else None,
        encoder=encoder_for(space, G),
        method_settings=SECOND_STAGE_SETTINGS.get(space.settings_key),
        progress=False,
    )
    codes = result.codes
    assert {k: tuple(v.shape) for k, v in codes.items()} == expected_shapes(space, G)
    total = result.losses["total"]
    assert torch.isfinite(total).all() and (total[:, -1] < total[:, 0]).all(), total
    if "z" in codes:
        assert torch.allclose(codes["z"].norm(dim=-1), torch.tensor(math.sqrt(G.z_dim)), rtol=1e-5)
    with torch.no_grad():
        if "residuals" in codes:  # SAM: zero residuals are its pivot's image, its own residual changes it
            ws = space.generator_inputs(codes, spaces.SpaceContext(generator=G)).ws
            residual = {8: torch.zeros(N, G.synthesis.channels[8], 8, 8)}
            everywhere = {8: torch.ones(N, 1, 8, 8)}
            assert torch.equal(residual_synthesis(G, ws, residual, everywhere)[0], G.synthesize(ws))
            assert not torch.allclose(result.reconstructions, G.synthesize(ws))
        else:
            atol = 1e-5 if "delta" in codes else 1e-6  # PTI renders under vmap, here with a plain copy
            assert torch.allclose(result.reconstructions, generator_output(codes, G), rtol=0, atol=atol)


@pytest.mark.parametrize("fused_scale", [False, True])
def test_tuned_synthesis_is_the_tuned_generator_with_either_upsampling(make_tiny_stylegan1, fused_scale):
    G = make_tiny_stylegan1(resolution=SIZE, fused_scale=fused_scale)
    ws = G.map(torch.randn(N, G.num_ws, G.z_dim, generator=torch.Generator().manual_seed(2)))
    zero = torch.zeros(N, parameter_count(G))
    with torch.no_grad():
        assert torch.allclose(tuned_synthesis(G, zero, ws), G.synthesize(ws), rtol=0, atol=1e-5)
        delta = 0.01 * torch.randn(N, parameter_count(G), generator=torch.Generator().manual_seed(3))
        tuned = tuned_synthesis(G, delta, ws)
        assert torch.allclose(tuned, generator_output({"w": ws, "delta": delta}, G), rtol=0, atol=1e-5)
        assert not torch.allclose(tuned, G.synthesize(ws), atol=1e-3)  # every image's own weights count


def test_planning_reads_the_generators_architecture_from_its_checkpoint(generator, stylegan1_config, tmp_path):
    assert generator.architecture == "stylegan1" and make_tiny_generator(resolution=SIZE).architecture == "stylegan2"
    assert generator_architecture(stylegan1_config) == "stylegan1"
    assert generator_architecture(ci_config(tmp_path, make_tiny_generator(resolution=SIZE))) == "stylegan2"
    assert generator_architecture(load_config("ci")) == "stylegan2"  # the random stand-in
    # an asset: the file decides, found in the mirror without fetching
    mirror = tmp_path / "mirror" / "nvidia-stylegan2-ffhq-1024"
    mirror.mkdir(parents=True)
    paper = load_config("paper", overrides={"asset_mirror": str(mirror.parent), "resources_dir": str(tmp_path / "r")})
    assert generator_architecture(paper) is None  # not here yet: the engine refuses at the job instead
    save_generator(generator, mirror / "stylegan2-ffhq-1024x1024.pkl")
    assert generator_architecture(paper) == "stylegan1"
    (mirror / "stylegan2-ffhq-1024x1024.pkl").write_bytes(b"stand-in")  # a dry run's stand-in: not a checkpoint
    assert generator_architecture(paper) is None and space_architecture_problems(paper) == []


def test_planning_and_the_engine_refuse_a_space_not_defined_for_the_generator(
    monkeypatch, generator, targets, stylegan1_config, tmp_path
):
    space = spaces.get("S")
    monkeypatch.setattr(space, "architectures", ("stylegan2",))
    monkeypatch.setattr(space, "architecture_note", "its styles are StyleGAN2's modulation.")
    assert_refused_while_planning("S", stylegan1_config)
    (problem,) = space_architecture_problems(with_spaces(stylegan1_config, ["W", "S", "F/Z+"]))
    assert "its styles are StyleGAN2's modulation. Drop it" in problem and "defined for StyleGAN2" in problem
    stylegan2 = make_tiny_generator(resolution=SIZE)
    assert space_architecture_problems(with_spaces(ci_config(tmp_path, stylegan2), ["W", "S"])) == []
    with pytest.raises(ValueError, match=r"space 'S' is not defined for StyleGAN1 generators: its styles"):
        invert(targets, generator, "S", steps=1, perceptual=None, progress=False)
    # the Snakefile stops on these problems while planning
    assert "space_architecture_problems(config)" in (REPO_ROOT / "workflow" / "Snakefile").read_text()


def test_registration_checks_the_architecture_declaration():
    def s_space(architectures, note=""):
        space = SSpace(name="S?", slug="s_test", uses_base_code=False, description="test")
        space.architectures, space.architecture_note = architectures, note
        return space

    for bad in [(), ("stylegan3",), ("stylegan1", "stylegan1"), "stylegan1", ["stylegan1"]]:
        with pytest.raises(RegistrationError, match="must be a tuple of distinct names"):
            validate_space(s_space(bad), source="test")
    with pytest.raises(RegistrationError, match="architecture_note"):
        validate_space(s_space(("stylegan2",)), source="test")
    assert validate_space(s_space(("stylegan2",), "why"), source="test").architecture_problem("stylegan2") is None
    assert validate_space(s_space(("stylegan2", "stylegan1")), source="test")
    pivot = WSpace(name="W?", slug="w_test", per_layer=False, uses_base_code=False, description="test")
    pivot.architectures, pivot.architecture_note = ("stylegan2",), "why"
    method = TunedSpace(name="T?", slug="t_test", pivot=pivot, description="test")
    with pytest.raises(RegistrationError, match="its pivot 'W\\?' only for \\['stylegan2'\\]"):
        validate_space(method, source="test")
    method.architectures, method.architecture_note = ("stylegan2",), "its pivot's"
    assert validate_space(method, source="test") is method


def test_idinvert_refuses_an_encoder_made_for_a_stylegan2(generator, targets, tmp_path):
    stylegan2 = make_tiny_generator(resolution=SIZE)
    encoder = make_domain_encoder(stylegan2)
    # the codes have the very shape this StyleGAN1 needs, so no shape check can tell
    assert encode_ws(encoder, targets).shape == (N, generator.num_ws, generator.w_dim)
    with pytest.raises(ValueError, match="IDInvert: the encoder was built for another generator.*this StyleGAN1"):
        invert(targets, generator, "IDInvert", steps=1, perceptual=None, encoder=encoder, progress=False)
    path = save_domain_encoder(encoder, tmp_path / "idinvert.pt", generator=stylegan2)
    with pytest.raises(EncoderFileError, match="another generator configuration.*architecture: file None vs generator"):
        load_domain_encoder(path, generator=generator)
