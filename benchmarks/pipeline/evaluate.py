"""Stages from inversion to the report: invert one space, edit + identity, tables, figures, provenance."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

import spaces
from benchmarks.pipeline import (
    IDENTITY_FILES,
    TARGET_SETS,
    device_of,
    ensure_parent,
    perceptual_distance,
    pipeline_generator,
    resized_perceptual,
    truncation,
)

PERCEPTUAL_LABELS = {"lpips-vgg": "LPIPS (VGG)", "stlpips-vgg": "ST-LPIPS (VGG)"}


def save_png(image: torch.Tensor, path: pathlib.Path) -> None:
    from PIL import Image

    from benchmarks.metrics.reconstruction import to_uint8

    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(to_uint8(image[None])[0]).save(tmp)
    os.replace(tmp, path)


def invert_stage(
    cfg: Mapping[str, Any],
    *,
    space_name: str,
    generator_path,
    targets_dir,
    out_dir,
    encoder_path=None,
    pn_stats_path=None,
    pivot_dir=None,
    budget_of: str | None = None,
) -> None:
    """Invert every target into one space; write codes.pt, recon/<id>.png, losses.csv, budget.csv, metrics.csv (with
    each image's budget: `image_steps`, its steps in every stage).
    pivot_dir: for a method on a pivot space (PTI, SAM), that space's inversion by this stage with the same
    config (the run's invert job of the pivot), taken as the method's first stage instead of recomputing it.
    budget_of: a method on the pivot `space_name`: the space is run for that method's whole step cap (its inversion's
    plus its second stage's), and its rows are named spaces.budget_matched_name(method) (Table 1's budget-matched
    rows)."""
    from benchmarks.metrics.reconstruction import reconstruction_metrics
    from fzplus.encoders import encoder_kind
    from fzplus.inversion import invert
    from fzplus.pn_stats import PNStats
    from fzplus.targets import read_prepared_targets

    device = device_of(cfg)
    G = pipeline_generator(generator_path, cfg)
    space = spaces.get(space_name)
    ids, targets = read_prepared_targets(targets_dir)
    inv = cfg["inversion"]
    steps, row_name = inv["steps"], space.name
    if budget_of is not None:
        method = spaces.get(budget_of)
        if method.pivot is None or method.pivot.name != space.name:
            raise ValueError(f"budget_of={budget_of!r} is not a method on the pivot space {space.name!r}")
        steps += method.second_stage_cap(inv[method.settings_key], G)
        row_name = spaces.budget_matched_name(method)
    encoder = (
        encoder_kind(space.encoder_kind).load(encoder_path, G, cfg) if space.encoder_kind and encoder_path else None
    )
    pn = PNStats.load(pn_stats_path) if space.needs_pn_stats else None
    net = perceptual_distance(cfg, device=device)
    result = invert(
        targets.to(device),
        G,
        space,
        steps=steps,
        lr=inv["lr"],
        lr_rampup=inv["lr_rampup"],
        lr_rampdown=inv["lr_rampdown"],
        stop_window=inv["stop_window"],
        stop_tolerance=inv["stop_tolerance"],
        keep_best=inv["keep_best"],
        lambda_per=inv["lambda_per"],
        lambda_reg=inv["lambda_reg"],
        perceptual=net,
        perceptual_size=cfg["perceptual"]["size"],
        perceptual_precision=inv["perceptual_precision"],
        encoder=encoder,
        base_size=inv["base_size"],
        seed=cfg["seed"],
        image_keys=ids,
        pn_stats=pn,
        batch_size=inv["batch_size"],
        method_settings=inv[space.settings_key] if space.settings_key else None,
        progress=cfg["progress"],
        pivot=read_inversion(pivot_dir, space_name=space.pivot.name) if pivot_dir else None,
        **truncation(cfg),
    )
    out = pathlib.Path(out_dir)
    (out / "recon").mkdir(parents=True, exist_ok=True)
    recons = result.reconstructions.clamp(-1, 1)  # as the authors' postprocessing: scored images are valid images
    for i, image_id in enumerate(ids):
        save_png(recons[i], out / "recon" / f"{image_id}.png")
    write_inversion(result, out)
    with torch.no_grad():
        metrics = reconstruction_metrics(
            targets, recons, image_ids=ids, space=row_name, perceptual=resized_perceptual(cfg, net=net)
        )
    metrics["image_steps"] = result.image_steps().numpy()
    metrics.to_csv(out / "metrics.csv", index=False)


def write_inversion(result, out_dir) -> None:
    """codes.pt (image id -> that image's codes), losses.csv (image_id, step, one column per loss term) and
    budget.csv (image_id, stage, steps: the updates each image took in each stage)."""
    out = pathlib.Path(out_dir)
    torch.save({image_id: result.image_codes(i) for i, image_id in enumerate(result.keys)}, out / "codes.pt")
    steps = result.losses[next(iter(result.losses))].shape[1]
    losses = pd.concat(
        [
            pd.DataFrame(
                {
                    "image_id": image_id,
                    "step": range(steps),
                    **{term: trace[i].numpy() for term, trace in result.losses.items()},
                }
            )
            for i, image_id in enumerate(result.keys)
        ],
        ignore_index=True,
    )
    losses.to_csv(out / "losses.csv", index=False)
    budget = pd.DataFrame(
        [
            dict(image_id=image_id, stage=stage, steps=int(taken[i]))
            for stage, taken in result.steps.items()
            for i, image_id in enumerate(result.keys)
        ],
        columns=["image_id", "stage", "steps"],
    )
    budget.to_csv(out / "budget.csv", index=False)


def read_inversion(inversion_dir, *, space_name: str):
    """An InversionResult (codes, loss traces and budget; no reconstructions or settings) from write_inversion's
    files."""
    from fzplus.inversion import InversionResult
    from fzplus.inversion.engine import LOSS_TERMS

    folder = pathlib.Path(inversion_dir)
    ids, codes = load_codes(folder / "codes.pt")
    table = pd.read_csv(folder / "losses.csv", dtype={"image_id": str})
    missing = sorted(set(ids) - set(table["image_id"]))
    if missing or not set(LOSS_TERMS) <= set(table.columns):
        raise ValueError(
            f"{folder / 'losses.csv'} does not match {folder / 'codes.pt'} (images missing: {missing[:4]}; "
            f"columns {list(table.columns)}): rerun that space's invert job"
        )
    rows = {image_id: group.sort_values("step") for image_id, group in table.groupby("image_id", sort=False)}
    if len({len(r) for r in rows.values()}) != 1:
        raise ValueError(
            f"{folder / 'losses.csv'}: the images hold different numbers of steps; rerun that space's invert job"
        )
    losses = {t: torch.tensor(np.stack([rows[i][t].to_numpy() for i in ids]), dtype=torch.float32) for t in LOSS_TERMS}
    budget = pd.read_csv(folder / "budget.csv", dtype={"image_id": str}).pivot(index="image_id", columns="stage")
    if set(budget.index) != set(ids):
        raise ValueError(f"{folder / 'budget.csv'} does not match {folder / 'codes.pt'}: rerun that space's invert job")
    steps = {stage: torch.tensor(budget["steps"][stage].reindex(ids).to_numpy()) for stage in budget["steps"].columns}
    return InversionResult(
        space=space_name, keys=ids, image_seeds=[], codes=codes, reconstructions=None, losses=losses, steps=steps
    )


def load_codes(path) -> tuple[list[str], dict[str, torch.Tensor]]:
    """codes.pt (image id -> per-image codes) -> ids and batch-first codes."""
    per_image = torch.load(path, map_location="cpu", weights_only=True)
    ids = list(per_image)
    return ids, {k: torch.cat([per_image[i][k] for i in ids]) for k in per_image[ids[0]]}


def tables_stage(
    cfg: Mapping[str, Any],
    *,
    metrics_paths: Sequence[str],
    identity_paths: Sequence[str],
    tables_dir,
    direction_paths: Sequence[str] = (),
    budget_matched_paths: Sequence[str] = (),
) -> None:
    """Table 1 (with the budget-matched pivot rows of `budget_matched_paths`), the mean identity similarity per
    space x family, the non-inferiority tests, and the fit diagnostics of every edit direction (SVM held-out
    accuracy, explained variance, ...)."""
    from benchmarks.report.tables import (
        edit_strength_table,
        identity_table,
        noninferiority_markdown,
        table1,
        table1_display,
        to_markdown,
        tuning_table,
        write_table,
    )
    from benchmarks.statistics.noninferiority import non_inferiority_table
    from fzplus.edits.directions import Directions

    out = pathlib.Path(tables_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = pd.concat([pd.read_csv(p, dtype={"image_id": str}) for p in metrics_paths], ignore_index=True)
    matched = [pd.read_csv(p, dtype={"image_id": str}) for p in budget_matched_paths]
    order = cfg["inversion"]["spaces"]
    budget_rows = {  # each budget-matched row right after its pivot's
        name: [spaces.budget_matched_name(m) for m in map(spaces.get, order) if m.pivot and m.pivot.name == name]
        for name in order
    }
    row_order = [row for name in order for row in (name, *budget_rows[name])]
    t1 = table1(pd.concat([metrics, *matched], ignore_index=True), spaces_order=row_order)
    label = PERCEPTUAL_LABELS.get(cfg["perceptual"]["backend"], "perceptual")
    write_table(t1, out / "table1.csv", markdown=to_markdown(table1_display(t1, perceptual_label=label)))
    pivots = {name: spaces.get(name).pivot.name for name in order if spaces.get(name).pivot is not None}
    if pivots:
        tuned = tuning_table(pd.concat([metrics, *matched], ignore_index=True), pivots=pivots)
        formats = {c: "{:.0f}" if c.endswith(" steps") else "{:.5f}" for c in tuned.columns}
        write_table(tuned, out / "tuning.csv", markdown=to_markdown(tuned, float_format=formats))
    if identity_paths:
        identity = pd.concat([pd.read_csv(p, dtype={"image_id": str}) for p in identity_paths], ignore_index=True)
        it = identity_table(identity)
        write_table(it, out / "identity.csv", markdown=to_markdown(it))
    s = cfg["statistics"]
    comparisons = [(a, b, m) for a, b in s["pairs"] for m in s["metrics"]]
    ni = non_inferiority_table(
        metrics, comparisons, margin=s["margin"], test=s["test"], confidence=s["confidence"], image_column="image_id"
    )
    write_table(ni, out / "noninferiority.csv", markdown=noninferiority_markdown(ni))
    if direction_paths:
        dt = pd.concat([Directions.load(p).diagnostics_table() for p in direction_paths], ignore_index=True)
        write_table(dt, out / "directions.csv", markdown=to_markdown(dt, float_format="{:.4g}"))
        strength = edit_strength_table(dt)
        write_table(strength, out / "edit_strength.csv", markdown=to_markdown(strength, float_format="{:.4g}"))


def figures_stage(cfg: Mapping[str, Any], *, results_dir, figures_dir) -> None:
    """Fig. 6 identity curves, the Fig. 2-style reconstruction grid, loss curves, SAM's chosen-latent maps."""
    from benchmarks.metrics.reconstruction import read_images
    from benchmarks.report.figures import SPACE_FIGURES, loss_curves, reconstruction_grid

    res, out = pathlib.Path(results_dir), pathlib.Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = cfg["inversion"]["spaces"]
    slugs = {n: spaces.get(n).slug for n in names}
    dpi = cfg["report"]["dpi"]
    identity_files = [
        res / "edits" / slugs[n] / "identity.csv" for n in names if (res / "edits" / slugs[n] / "identity.csv").exists()
    ]
    if identity_files:
        identity = pd.concat([pd.read_csv(p, dtype={"image_id": str}) for p in identity_files], ignore_index=True)
        editing_figures(cfg, res, out, identity, names=names)
    targets = pd.read_csv(res / "targets" / "targets.csv", dtype={"image_id": str})
    grid_ids = list(targets["image_id"][: cfg["report"]["grid_images"]])
    target_images = read_images([res / "targets" / "images" / f"{i}.png" for i in grid_ids])
    recons = {n: read_images([res / "inversion" / slugs[n] / "recon" / f"{i}.png" for i in grid_ids]) for n in names}
    metrics = pd.concat(
        [pd.read_csv(res / "inversion" / slugs[n] / "metrics.csv", dtype={"image_id": str}) for n in names],
        ignore_index=True,
    )
    label = PERCEPTUAL_LABELS.get(cfg["perceptual"]["backend"], "perceptual")
    reconstruction_grid(
        target_images,
        recons,
        image_ids=grid_ids,
        spaces=names,
        path=out / "reconstructions.png",
        per_image_metrics=metrics,
        perceptual_label=label,
        dpi=dpi,
    )
    losses = pd.concat(
        [
            pd.read_csv(res / "inversion" / slugs[n] / "losses.csv", dtype={"image_id": str}).assign(space=n)
            for n in names
        ],
        ignore_index=True,
    )
    loss_curves(losses, path=out / "loss_curves.png", dpi=dpi)
    for name in names:  # the extra figures a plugin declares (SAM: the chosen latent per segment of each grid target)
        space = spaces.get(name)
        for figure in space.figures:
            codes = torch.load(res / "inversion" / space.slug / "codes.pt", weights_only=True)
            SPACE_FIGURES[figure](
                space,
                codes,
                target_images=target_images,
                recons=recons[name],
                image_ids=grid_ids,
                path=out / f"{figure}_{space.slug}.png",
                dpi=dpi,
            )


def editing_figures(
    cfg: Mapping[str, Any], res: pathlib.Path, out: pathlib.Path, identity: pd.DataFrame, *, names: Sequence[str]
) -> None:
    """Fig. 6 with the metric's floor and ceiling, every editing metric against alpha, identity against the
    achieved attribute change (undetected faces scored at the floor throughout, benchmarks.statistics.editing)."""
    from benchmarks.report.editing_figures import editing_metrics_plot, identity_vs_change_plot, reference_bands
    from benchmarks.report.figures import identity_vs_step_plot
    from benchmarks.statistics.editing import identity_floor, scored_similarity

    tables, dpi = res / "tables", cfg["report"]["dpi"]
    baselines = pd.read_csv(tables / "editing_baselines.csv")  # every metric's median per reference pair, KID included
    scored = identity.assign(scored=scored_similarity(identity, floor=identity_floor(baselines)))
    # Fig. 6: a row of panels per target set (the real targets; the in-domain ones, where the run has them)
    panels, bands = (
        [scored.assign(target_set=TARGET_SETS["identity"])],
        {TARGET_SETS["identity"]: reference_bands(baselines, "identity")},
    )
    in_domain = [res / "edits" / spaces.get(n).slug / IDENTITY_FILES["identity_in_domain"] for n in names]
    if (baselines.metric == "identity_in_domain").any() and all(p.exists() for p in in_domain):
        frame = pd.concat([pd.read_csv(p, dtype={"image_id": str}) for p in in_domain], ignore_index=True)
        floor = identity_floor(baselines, metric="identity_in_domain")
        panels.append(
            frame.assign(scored=scored_similarity(frame, floor=floor), target_set=TARGET_SETS["identity_in_domain"])
        )
        bands[TARGET_SETS["identity_in_domain"]] = reference_bands(baselines, "identity_in_domain")
    fig6 = pd.concat(panels, ignore_index=True)
    identity_vs_step_plot(
        fig6.assign(similarity=fig6.scored), spaces=names, path=out / "identity_vs_step.png", bands=bands, dpi=dpi
    )
    fidelity = pd.concat(
        [pd.read_csv(res / "edits" / spaces.get(n).slug / "fidelity.csv", dtype={"image_id": str}) for n in names],
        ignore_index=True,
    )
    changes = pd.read_csv(tables / "attribute_changes.csv", dtype={"image_id": str})
    matched = pd.read_csv(tables / "matched_identity.csv")
    highlight = [n for pair in cfg["statistics"]["pairs"] for n in pair]
    editing_metrics_plot(
        identity=scored,
        fidelity=fidelity,
        kids=pd.read_csv(tables / "realism.csv"),
        matched=matched.rename(columns={"identity": "similarity"}),
        baselines=baselines,
        spaces=names,
        highlight=highlight,
        path=out / "editing_metrics.png",
        dpi=dpi,
    )
    if not changes.empty:
        levels = matched.groupby("direction")["level"].first().to_dict()
        identity_vs_change_plot(
            changes, levels=levels, spaces=names, baselines=baselines, path=out / "identity_vs_change.png", dpi=dpi
        )


def provenance_stage(cfg: Mapping[str, Any], *, generator_path, out_path, pn_stats_summary_path=None) -> None:
    from fzplus.assets import file_sha256
    from fzplus.generator import read_checkpoint_metadata
    from fzplus.planning import config_asset_hashes
    from fzplus.provenance import config_seeds, write_provenance

    extra = {
        "generator": {
            "file": str(generator_path),
            "sha256": file_sha256(generator_path),
            "metadata": read_checkpoint_metadata(generator_path),
        }
    }
    if pn_stats_summary_path:
        extra["pn_stats"] = json.loads(pathlib.Path(pn_stats_summary_path).read_text())
    write_provenance(
        ensure_parent(out_path), cfg, asset_hashes=config_asset_hashes(cfg), seeds=config_seeds(cfg), extra=extra
    )


def report_stage(cfg: Mapping[str, Any], *, results_dir, out_path) -> None:
    from benchmarks.report.html import build_report

    build_report(
        results_dir,
        out_path=out_path,
        title=cfg["report"]["title"],
        perceptual_label=PERCEPTUAL_LABELS.get(cfg["perceptual"]["backend"], "perceptual"),
    )
