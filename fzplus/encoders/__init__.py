"""The encoders a space may ask the run for (spaces.base.LatentSpace.encoder_kind), one registry entry each:

- "base-code": E: X -> F, the F spaces' base-code encoder (paper Eq. 2; BDInvert's design), fzplus.encoders.base_code;
- "w-plus": IDInvert's domain-guided E: X -> W+, trained against a discriminator, fzplus.encoders.domain.

An entry says everything the pipeline needs: the config section of its recipe (generated from the recipe class,
fzplus.encoders.recipes), the file the run writes, how a file is loaded and saved, how one is trained, and the
held-out figures and preview of its card. The workflow's encoder rule, the invert rule's inputs and the plugin
check (spaces.base.validate_space) all read KINDS, so a new kind is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from fzplus.encoders.recipes import BaseCodeRecipe, DomainRecipe, EncoderRecipe


class EncoderKind(NamedTuple):
    """One kind of encoder. The callables take the validated run config `cfg` where they need its recipe."""

    section: str  # the config section of its recipe (and of `<section>.pretrained`)
    file: str  # the file the run's encoder rule writes, under results/<run>/
    recipe: type[EncoderRecipe]
    perceptual_weight: str  # the recipe key whose weight > 0 asks for the run's perceptual distance in training
    reads: tuple[str, ...]  # the config keys it reads besides its section (dotted)
    hint: str  # how the mini profile's committed file is remade
    load: Callable  # (path, G, cfg) -> encoder in eval mode
    save: Callable  # (encoder, path, G)
    train: Callable  # (cfg, G, checkpoint_path, perceptual) -> (encoder, history)
    evaluate: Callable  # (G, encoder, cfg, samples) -> {figure: [samples]}
    preview: Callable  # (G, encoder, cfg) -> images for a grid


def _sampling(section: Mapping[str, Any]) -> dict:
    return dict(truncation_psi=section["truncation_psi"], truncation_cutoff=section["truncation_cutoff"])


def _train_base_code(cfg, G, checkpoint_path, perceptual):
    from fzplus.encoders.base_code_training import train_encoder

    e = cfg["encoder"]
    return train_encoder(
        G,
        base_size=cfg["inversion"]["base_size"],
        steps=e["steps"],
        batch_size=e["batch_size"],
        lr=e["lr"],
        lr_decay_every=e["lr_decay_every"],
        lr_decay=e["lr_decay"],
        lambda_enc=e["lambda_enc"],
        perceptual=perceptual,
        stage_channels=tuple(e["stage_channels"]),
        seed=cfg["seed"],
        checkpoint_path=checkpoint_path,
        checkpoint_every=e["checkpoint_every"],
        progress=cfg["progress"],
        **_sampling(e),
    )


def _train_domain(cfg, G, checkpoint_path, perceptual):
    from fzplus.encoders.domain_training import train_domain_encoder

    e = cfg["idinvert"]
    return train_domain_encoder(
        G,
        steps=e["steps"],
        batch_size=e["batch_size"],
        lr=e["lr"],
        lambda_adv=e["lambda_adv"],
        r1_gamma=e["r1_gamma"],
        r1_every=e["r1_every"],
        lambda_per=e["lambda_per"],
        perceptual=perceptual,
        channel_base=e["channel_base"],
        channel_max=e["channel_max"],
        dense_rank=e["dense_rank"],
        seed=cfg["seed"],
        checkpoint_path=checkpoint_path,
        checkpoint_every=e["checkpoint_every"],
        progress=cfg["progress"],
        **_sampling(e),
    )


def _load_base_code(path, G, cfg):
    from fzplus.encoders.base_code import load_encoder

    return load_encoder(path, generator=G, base_size=cfg["inversion"]["base_size"])


def _save_base_code(encoder, path, G):
    from fzplus.encoders.base_code import save_encoder

    save_encoder(encoder, path, generator=G)


def _evaluate_base_code(G, encoder, cfg, n):
    from fzplus.encoders.base_code_training import evaluate_encoder

    return evaluate_encoder(
        G, encoder, base_size=cfg["inversion"]["base_size"], num_samples=n, **_sampling(cfg["encoder"])
    )


def _preview_base_code(G, encoder, cfg):
    from fzplus.encoders.base_code_training import reconstruction_preview

    return reconstruction_preview(G, encoder, base_size=cfg["inversion"]["base_size"], **_sampling(cfg["encoder"]))


def _load_domain(path, G, cfg):
    from fzplus.encoders.domain import load_domain_encoder

    return load_domain_encoder(path, generator=G)


def _save_domain(encoder, path, G):
    from fzplus.encoders.domain import save_domain_encoder

    save_domain_encoder(encoder, path, generator=G)


def _evaluate_domain(G, encoder, cfg, n):
    from fzplus.encoders.domain_training import evaluate_domain_encoder

    return evaluate_domain_encoder(G, encoder, num_samples=n, **_sampling(cfg["idinvert"]))


def _preview_domain(G, encoder, cfg):
    from fzplus.encoders.domain_training import domain_encoder_preview

    return domain_encoder_preview(G, encoder, **_sampling(cfg["idinvert"]))


KINDS: dict[str, EncoderKind] = {
    "base-code": EncoderKind(
        section="encoder",
        file="encoder.pt",
        recipe=BaseCodeRecipe,
        perceptual_weight="lambda_enc",
        reads=("inversion.base_size",),
        hint=(
            "the mini profile's encoder: `snakemake --cores 2 train_mini_encoder`, about an hour on a CPU, then copy "
            "resources/mini-encoder/encoder.pt to models/mini/"
        ),
        load=_load_base_code,
        save=_save_base_code,
        train=_train_base_code,
        evaluate=_evaluate_base_code,
        preview=_preview_base_code,
    ),
    "w-plus": EncoderKind(
        section="idinvert",
        file="idinvert_encoder.pt",
        recipe=DomainRecipe,
        perceptual_weight="lambda_per",
        reads=(),
        hint=(
            "the mini profile's IDInvert encoder: `snakemake --cores 2 train_mini_idinvert_encoder`, "
            "about half an hour on a CPU, "
            "then copy resources/mini-idinvert/idinvert_encoder.pt to models/mini/"
        ),
        load=_load_domain,
        save=_save_domain,
        train=_train_domain,
        evaluate=_evaluate_domain,
        preview=_preview_domain,
    ),
}


def encoder_kind(kind: str) -> EncoderKind:
    """The registry entry of an encoder kind ('base-code', 'w-plus')."""
    if kind not in KINDS:
        raise ValueError(f"unknown encoder kind {kind!r}; known: {list(KINDS)}")
    return KINDS[kind]
