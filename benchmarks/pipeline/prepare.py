"""Stages before inversion: the run's generator, targets, P_N statistics, the F encoder, edit directions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from benchmarks.pipeline import (
    StageError,
    device_of,
    ensure_parent,
    perceptual_distance,
    pipeline_generator,
    resized_perceptual,
    truncation,
)
from fzplus.config import resolve_path
from fzplus.encoders import encoder_kind
from fzplus.generator import Generator, StyleGAN1Generator, load_generator, save_generator
from fzplus.generator.checkpoints import estimate_w_avg
from fzplus.planning import materialize_config_assets

MINI_BOOTSTRAP_HINT = (
    "the mini generator is trained by this project's bootstrap target: "
    "`snakemake --cores 2 train_mini_generator` (hours on a CPU; see models/mini/MODEL_CARD.md)"
)


def random_stand_in_generator(spec: Mapping[str, Any]) -> Generator | StyleGAN1Generator:
    """ci's seeded random generator of spec["architecture"] (StyleGAN2 or StyleGAN1): narrow channels, non-zero
    noise strengths and biases, w_avg estimated."""
    stylegan1 = spec["architecture"] == "stylegan1"
    torch.manual_seed(spec["seed"])
    G = (StyleGAN1Generator if stylegan1 else Generator)(
        resolution=spec["resolution"],
        channel_base=spec["channel_base"],
        channel_max=spec["channel_max"],
        mapping_layers=spec["mapping_layers"],
    )
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                p.normal_(0.0, 0.1)
        if stylegan1:  # NVIDIA's const starts at ones, where the bias before lrelu hardly shows
            G.synthesis.b4.const.normal_()
        G.mapping.w_avg.copy_(estimate_w_avg(G, num_samples=4096, seed=spec["seed"]))
    return G


def build_generator(cfg: Mapping[str, Any], out_path: str | os.PathLike) -> None:
    """Normalise the configured generator (checkpoint path, asset, or ci's random stand-in) into the suite's
    own format, so that every later stage loads one small, verified file."""
    g = cfg["generator"]
    if g["random"]:
        G, source = random_stand_in_generator(g["random"]), {"random": dict(g["random"])}
    else:
        path = resolve_path(g["checkpoint"]) if g["checkpoint"] else materialize_config_assets(cfg)["generator.asset"]
        if not path.is_file():
            hint = (
                MINI_BOOTSTRAP_HINT
                if cfg["profile"] == "mini"
                else "set generator.checkpoint or generator.asset in the profile"
            )
            raise StageError(f"generator checkpoint {path} not found: {hint}")
        G, source = load_generator(path), {"path": str(path)}
    save_generator(G, ensure_parent(out_path), metadata={"source": source, "profile": cfg["profile"]})


def prepare_targets_stage(cfg: Mapping[str, Any], *, generator_path, out_dir) -> None:
    from fzplus.targets import prepare_targets

    t = cfg["targets"]
    source = resolve_path(t["folder"]) if t["folder"] else materialize_config_assets(cfg)["targets.asset"]
    resolution = load_generator(generator_path).resolution
    prepare_targets(
        source,
        out_dir,
        resolution=resolution,
        count=t["count"],
        seed=t["seed"],
        crop=t["crop"],
        align=t["align"],
        progress=cfg["progress"],
    )


def pn_stats_stage(cfg: Mapping[str, Any], *, generator_path, out_path, summary_path) -> None:
    """The P_N statistics (.npz) and their summary (.json: spectrum, variance floor, start point, and the
    regulariser at the start, at w_avg and over 4,096 fresh codes), which provenance records."""
    import json

    from fzplus.io import atomic_write_text
    from fzplus.pn_stats import compute_pn_stats

    G = pipeline_generator(generator_path, cfg)
    p = cfg["pn_stats"]
    stats = compute_pn_stats(
        G,
        num_samples=p["samples"],
        seed=cfg["seed"],
        batch_size=p["batch_size"],
        variance_floor=p["variance_floor"],
        progress=cfg["progress"],
    )
    stats.save(ensure_parent(out_path))
    fresh_z = torch.randn(
        4096, G.z_dim, generator=torch.Generator().manual_seed(cfg["seed"] + 2)
    )  # not the PCA's own draws
    with torch.no_grad():
        fresh_w = G.mapping(fresh_z.to(G.w_avg.device)).cpu()
    summary = stats.summary(fresh_w=fresh_w, w_avg=G.w_avg.cpu())
    atomic_write_text(ensure_parent(summary_path), json.dumps(summary, indent=2) + "\n")


def encoder_stage(cfg: Mapping[str, Any], *, generator_path, out_path, kind: str = "base-code") -> None:
    """The run's encoder of `kind`: the profile's pretrained file (`<section>.pretrained`), checked against
    the run's generator, or one trained here with the profile's recipe (checkpoint beside out_path)."""
    import pathlib

    from fzplus.encoders.base_code import EncoderFileError

    k = encoder_kind(kind)
    G = pipeline_generator(generator_path, cfg)
    pretrained = cfg[k.section]["pretrained"]
    if not pretrained:
        train_encoder_from_config(
            cfg, G, out_path=out_path, checkpoint_path=pathlib.Path(str(out_path) + ".training"), kind=kind
        )
        return
    try:
        encoder = k.load(resolve_path(pretrained), G, cfg)
    except (FileNotFoundError, EncoderFileError) as error:
        raise StageError(
            f"{k.section}.pretrained: {error}. Retrain it for this generator ({k.hint}), or set "
            f"{k.section}.pretrained: null to train one inside the run with the profile's {k.section} recipe"
        ) from error
    k.save(encoder, ensure_parent(out_path), G)


def train_encoder_from_config(
    cfg: Mapping[str, Any], G: Generator, *, out_path, checkpoint_path, kind: str = "base-code"
) -> tuple[Any, dict]:
    """Train the encoder of `kind` for the pipeline generator G with the profile's recipe and write it to
    out_path: (encoder in eval mode, per-step history). The checkpoint is deleted once the encoder is
    written, so that a later run with other settings starts afresh instead of refusing to resume."""
    import pathlib

    k, checkpoint = encoder_kind(kind), pathlib.Path(checkpoint_path)
    perceptual = resized_perceptual(cfg) if cfg[k.section][k.perceptual_weight] > 0 else None
    encoder, history = k.train(cfg, G, checkpoint, perceptual)
    k.save(encoder, ensure_parent(out_path), G)
    checkpoint.unlink(missing_ok=True)
    return encoder, history


def train_pretrained_encoder_stage(
    cfg: Mapping[str, Any],
    *,
    generator_path,
    out_path,
    card_path,
    preview_path,
    checkpoint_path,
    kind: str = "base-code",
    held_out_samples: int = 256,
) -> None:
    """Bootstrap: train the profile's pretrained encoder of `kind` and write its card (recipe, cost, held-out
    figures) and a preview grid (base-code: held-out generated images, G(f0, true ws), G(mean feature map,
    true ws); w-plus: held-out generated images, G(E(x)))."""
    import json
    import time

    from fzplus.assets import file_sha256
    from fzplus.io import atomic_write_text
    from fzplus.provenance import cpu_model
    from fzplus.training.mini_generator import save_grid

    k = encoder_kind(kind)
    G = pipeline_generator(generator_path, cfg)
    started = time.perf_counter()
    encoder, history = train_encoder_from_config(cfg, G, out_path=out_path, checkpoint_path=checkpoint_path, kind=kind)
    seconds = time.perf_counter() - started  # of this call: a resumed run counts only its own part
    figures = k.evaluate(G, encoder, cfg, held_out_samples)
    save_grid(k.preview(G, encoder, cfg), ensure_parent(preview_path))
    tail = max(1, len(history["loss"]) // 20)
    recipe = {key: v for key, v in cfg[k.section].items() if key != "pretrained"} | dict(seed=cfg["seed"])
    if kind == "base-code":
        recipe["base_size"] = cfg["inversion"]["base_size"]
    card = dict(
        generator=dict(path=str(generator_path), sha256=file_sha256(generator_path)),
        recipe=recipe,
        training=dict(
            steps=len(history["loss"]),
            wall_seconds_this_call=round(seconds, 1),
            threads=torch.get_num_threads(),
            machine=f"{cpu_model()}, {os.cpu_count()} cores",
            loss_first_5pct=float(np.mean(history["loss"][:tail])),
            loss_last_5pct=float(np.mean(history["loss"][-tail:])),
        ),
        held_out=dict(
            samples=held_out_samples, **{f"{key}_mean": round(float(v.mean()), 5) for key, v in figures.items()}
        ),
    )
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")


def attribute_samples_stage(cfg: Mapping[str, Any], *, generator_path, out_path) -> None:
    """Latent samples with attribute scores for InterfaceGAN: labels from dlib landmarks on generated faces,
    or, with released Z boundaries, the boundaries' own decision values (so W-space SVMs learn the same
    attributes)."""
    from fzplus.edits.attributes import label_attributes

    G = pipeline_generator(generator_path, cfg)
    ig = cfg["directions"]["interfacegan"]
    z = torch.randn(
        ig["samples"], G.z_dim, generator=torch.Generator().manual_seed(cfg["seed"] + 1)
    )  # on the CPU: same z on any device
    device = G.w_avg.device
    with torch.no_grad():
        w = torch.cat([G.mapping(part.to(device)).cpu() for part in z.split(1000)])
        if ig["boundaries_asset"]:
            released = released_boundaries(cfg)
            scores = (z @ released.vectors.t()).numpy()
            detected = np.ones(len(z), bool)
        else:
            images = torch.cat(
                [G.synthesize(G.map(part.to(device), **truncation(cfg))).clamp(-1, 1).cpu() for part in z.split(64)]
            )
            table = label_attributes(images, progress=cfg["progress"])
            scores, detected = table[list(ig["attributes"])].to_numpy(np.float64), table["detected"].to_numpy()
    np.savez(
        ensure_parent(out_path),
        z=z.numpy(),
        w=w.numpy(),
        scores=scores,
        detected=detected,
        attributes=np.array(ig["attributes"]),
    )


def released_boundaries(cfg: Mapping[str, Any]):
    from fzplus.edits.directions.interfacegan import load_released_boundaries

    ig = cfg["directions"]["interfacegan"]
    folder = materialize_config_assets(cfg)["directions.interfacegan.boundaries_asset"]
    return load_released_boundaries(folder, names=ig["attributes"], domain="Z")


def directions_stage(
    cfg: Mapping[str, Any],
    *,
    family: str,
    domain: str,
    generator_path,
    out_path,
    samples_path=None,
    reference_path=None,
) -> None:
    """One family's directions in one domain, calibrated to the profile's unit of alpha (fzplus.edits.calibration).
    reference_path: the family's Z directions, which W directions are matched to under `directions.unit.rule:
    matched`."""
    from fzplus.edits.calibration import calibrate_directions
    from fzplus.edits.directions import Directions

    d, G = cfg["directions"], pipeline_generator(generator_path, cfg)
    found = find_family(cfg, family=family, domain=domain, generator=G, samples_path=samples_path)
    net = perceptual_distance(cfg, device=device_of(cfg))
    # at the generator's own size the bare net measures the same, and caches the unedited images' features
    distance = net if cfg["perceptual"]["size"] == G.resolution else resized_perceptual(cfg, net=net, fast=True)
    calibrated = calibrate_directions(
        found,
        generator=G,
        distance=distance,
        rule=d["unit"]["rule"],
        reference=None if reference_path is None else Directions.load(reference_path),
        covariance_samples=d["ganspace"]["samples"],
        covariance_batch_size=d["ganspace"]["batch_size"],
        seed=cfg["seed"],
        num_images=d["unit"]["images"],
        tolerance=d["unit"]["tolerance"],
        max_scale=d["unit"]["max_scale"],
        device=device_of(cfg),
    )
    calibrated.save(ensure_parent(out_path))


def find_family(cfg: Mapping[str, Any], *, family: str, domain: str, generator: Generator, samples_path=None):
    from fzplus.edits.directions import find_directions

    d, G = cfg["directions"], generator
    if family == "random":
        found = find_directions(
            "random", count=d["random"]["count"], sigma=d["random"]["sigma"], seed=cfg["seed"], domain=domain
        )
    elif family == "ganspace":
        g = d["ganspace"]
        found = find_directions(
            "ganspace",
            mapping=G.mapping,
            z_dim=G.z_dim,
            domain=domain,
            components=tuple(g["components"]),
            num_samples=g["samples"],
            batch_size=g["batch_size"],
            seed=cfg["seed"],
            device=device_of(cfg),
            progress=cfg["progress"],
        )
    elif family == "interfacegan":
        ig = d["interfacegan"]
        if ig["boundaries_asset"] and domain == "Z":
            found = released_boundaries(cfg)
        else:
            s = np.load(samples_path)
            found = find_directions(
                "interfacegan",
                codes=s["z" if domain == "Z" else "w"],
                scores=s["scores"],
                names=[str(a) for a in s["attributes"]],
                domain=domain,
                chosen=ig["chosen_ratio"],
                split_ratio=ig["split_ratio"],
                seed=cfg["seed"],
            )
    else:
        raise StageError(f"unknown direction family {family!r}; expected one of random, ganspace, interfacegan")
    return found
