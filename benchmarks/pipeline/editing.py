"""Editing stages: in-domain targets, the metrics' reference pairs, and the edit sweep of one space (identity,
achieved attribute change, realism features, ground-truth edit fidelity, grids)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

import spaces
from benchmarks.pipeline import (
    IDENTITY_FILES,
    device_of,
    ensure_parent,
    perceptual_distance,
    pipeline_generator,
    resized_perceptual,
    truncation,
)
from benchmarks.pipeline.evaluate import load_codes, save_png

REALISM_FILE, FIDELITY_FILE, BASELINES_FILE, REFERENCE_FILE = (
    "realism.npz",
    "fidelity.csv",
    "baselines.csv",
    "realism_reference.npz",
)
# fidelity (edited inversion vs the true codes' edit) and the size of that true edit (vs the true codes unedited)
FIDELITY_SCORES = ["perceptual", "mse", "true_edit_perceptual", "true_edit_mse"]
FIDELITY_COLUMNS = ["space", "family", "direction", "image_id", "alpha", *FIDELITY_SCORES]


def identity_backend(cfg: Mapping[str, Any]):
    from benchmarks.metrics.identity import make_identity_backend

    ident = cfg["identity"]
    kwargs = dict(on_undetected=ident["on_undetected"])
    if ident["backend"] == "sface":
        kwargs["alignment"] = ident["alignment"]
    if ident.get("weights_asset"):
        from fzplus.planning import materialize_config_assets

        kwargs["weights"] = materialize_config_assets(cfg)["identity.weights_asset"]
    return make_identity_backend(ident["backend"], **kwargs)


def ground_truth_targets_stage(cfg: Mapping[str, Any], *, generator_path, out_dir) -> None:
    """Seeded generator samples as targets (the prepared-targets layout) and their true z (z.pt)."""
    from fzplus.assets import file_sha256
    from fzplus.edits.ground_truth import ground_truth_samples
    from fzplus.targets import CSV_COLUMNS, CSV_NAME, IMAGES_DIR

    gt = cfg["editing"]["ground_truth"]
    out = pathlib.Path(out_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    G = pipeline_generator(generator_path, cfg)
    ids, z, images = ground_truth_samples(G, count=max(gt["images"], 1), seed=gt["seed"], **truncation(cfg))
    ids, z, images = ids[: gt["images"]], z[: gt["images"]], images[: gt["images"]]
    rows = []
    for image_id, image in zip(ids, images):
        path = out / IMAGES_DIR / f"{image_id}.png"
        save_png(image, path)
        r = G.resolution
        rows.append(
            dict(
                image_id=image_id,
                source_path=f"generator sample: seed {gt['seed']}",
                source_sha256=file_sha256(path),
                width=r,
                height=r,
                mode="RGB",
                conversions="",
                alignment="",
            )
        )
    torch.save({image_id: z[i : i + 1].cpu() for i, image_id in enumerate(ids)}, out / "z.pt")
    pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(out / CSV_NAME, index=False)


def editing_references_stage(cfg: Mapping[str, Any], *, generator_path, targets_dir, ground_truth_dir, out_dir) -> None:
    """Every editing metric on reference pairs (benchmarks.metrics.sanity): identity on the real and on the in-domain
    targets, fidelity on the in-domain targets; and the realism reference: features of fresh samples, with KID
    sanity sets."""
    from benchmarks.metrics.identity import identity_similarity
    from benchmarks.metrics.realism import kid, realism_features
    from benchmarks.metrics.sanity import reference_images, reference_scores
    from fzplus.edits.ground_truth import per_image_mse
    from fzplus.targets import read_prepared_targets

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed, device = cfg["seed"], device_of(cfg)
    ids, targets = read_prepared_targets(targets_dir)
    backend = identity_backend(cfg)
    frames = [
        reference_scores(
            lambda x, y: identity_similarity(backend, x, y)["similarity"].to_numpy(), targets, image_ids=ids, seed=seed
        ).assign(metric="identity")
    ]
    gt_ids, gt_images = (
        read_prepared_targets(ground_truth_dir) if cfg["editing"]["ground_truth"]["images"] else ([], None)
    )
    distance = resized_perceptual(cfg, fast=True)  # as edit_stage scores fidelity
    if len(gt_ids) >= 2:
        frames.append(
            reference_scores(
                lambda x, y: identity_similarity(backend, x, y)["similarity"].to_numpy(),
                gt_images,
                image_ids=gt_ids,
                seed=seed,
            ).assign(metric="identity_in_domain")
        )
        names = ("jpeg", "other", "gray", "blur", "noise")  # a mirror image is no ceiling for an edit's fidelity
        frames.append(
            reference_scores(
                lambda x, y: distance(x, y).double().cpu().numpy(), gt_images, image_ids=gt_ids, seed=seed, names=names
            ).assign(metric="fidelity_perceptual")
        )
        frames.append(
            reference_scores(per_image_mse, gt_images, image_ids=gt_ids, seed=seed, names=names).assign(
                metric="fidelity_mse"
            )
        )
    pd.concat(frames, ignore_index=True).to_csv(out / BASELINES_FILE, index=False)

    r = cfg["editing"]["realism"]
    G = pipeline_generator(generator_path, cfg)
    net = perceptual_distance(cfg, device=device)
    with torch.no_grad():
        samples = [
            G(G.sample_z(r["reference_samples"], seed=r["seed"] + k), **truncation(cfg)).clamp(-1, 1) for k in (0, 1)
        ]
    reference = realism_features(samples[0], net)
    # Floors are far from the samples (KID ~1e-3 against a ceiling ~1e-6): 64 of each tell them apart.
    degraded = reference_images(samples[1][: min(64, len(samples[1]))], seed=seed, names=("blur", "noise", "gray"))
    sets = {
        "samples": ("ceiling", samples[1]),
        "targets": ("check", targets),
        **{name: ("floor", images) for name, images in degraded.items()},
    }
    kids = [
        dict(reference=name, kind=kind, kid=kid(realism_features(images, net), reference))
        for name, (kind, images) in sets.items()
    ]
    pd.DataFrame(kids).to_csv(out / "realism_baselines.csv", index=False)
    np.savez(out / REFERENCE_FILE, features=reference)


def realism_selection(image_ids, families: Mapping[str, Any], alphas, *, per_alpha: int, seed: int) -> set:
    """The (family, direction, image_id, alpha) edits whose realism features are kept: all unedited images
    (alpha 0, listed once) and, per |alpha|, a seeded draw of `per_alpha` edits over images, directions and
    signs. The same draw for every space of a domain, so realism comparisons are paired by image."""
    rng = np.random.default_rng(seed)
    first = next(iter(families))
    chosen = {(first, families[first].names[0], i, 0.0) for i in image_ids}
    for size in sorted({abs(a) for a in alphas} - {0.0}):
        pool = [
            (f, name, i, a)
            for f, d in families.items()
            for name in d.names
            for i in image_ids
            for a in alphas
            if abs(a) == size
        ]
        for k in rng.choice(len(pool), size=min(per_alpha, len(pool)), replace=False):
            chosen.add(pool[k])
    return chosen


def edit_stage(
    cfg: Mapping[str, Any],
    *,
    space_name: str,
    generator_path,
    targets_dir,
    codes_path,
    direction_paths: Mapping[str, str],
    out_dir,
    ground_truth_dir=None,
    ground_truth_codes_path=None,
) -> None:
    """The edit sweep (SPEC §7) of one space on the first `editing.images` targets: identity.csv (identity and
    achieved attribute change of every edit), realism.npz (features of a seeded draw of edits), fidelity.csv
    (ground-truth edit fidelity on the in-domain targets), identity_in_domain.csv (identity.csv's sweep on the
    in-domain targets; empty without them) and grids/<family>.png."""
    from benchmarks.metrics.edit_identity import identity_sweep
    from benchmarks.metrics.realism import realism_features
    from benchmarks.report.figures import editing_grid
    from fzplus.edits.directions import Directions
    from fzplus.edits.ground_truth import edit_fidelity, true_codes
    from fzplus.targets import read_prepared_targets

    out = pathlib.Path(out_dir)
    G = pipeline_generator(generator_path, cfg)
    space = spaces.get(space_name)
    ids, codes = load_codes(codes_path)
    target_ids, targets = read_prepared_targets(targets_dir)
    keep_ids = ids[: cfg["editing"]["images"]]
    order = [target_ids.index(i) for i in keep_ids]
    codes = {k: v[[ids.index(i) for i in keep_ids]] for k, v in codes.items()}
    families = {family: Directions.load(path) for family, path in direction_paths.items()}
    alphas, grid_ids = cfg["editing"]["alphas"], set(keep_ids[: cfg["report"]["grid_images"]])
    r = cfg["editing"]["realism"]
    realism = realism_selection(keep_ids, families, alphas, per_alpha=r["images_per_alpha"], seed=r["seed"])
    keep = lambda family, name, image_id, alpha: image_id in grid_ids or (family, name, image_id, alpha) in realism  # noqa: E731
    backend = identity_backend(cfg)
    table, kept = identity_sweep(
        targets[order],
        keep_ids,
        codes,
        space,
        G,
        families,
        backend,
        alphas=alphas,
        keep=keep,
        progress=cfg["progress"],
        **truncation(cfg),
    )
    table.to_csv(ensure_parent(out / "identity.csv"), index=False)

    chosen = sorted((key for key in kept if key in realism), key=lambda k: (abs(k[3]), k[0], k[1], k[2], k[3]))
    net = perceptual_distance(cfg, device=device_of(cfg))
    features = realism_features(torch.stack([kept[key] for key in chosen]), net)
    np.savez(
        out / REALISM_FILE,
        features=features,
        family=np.array([k[0] for k in chosen]),
        direction=np.array([k[1] for k in chosen]),
        image_id=np.array([k[2] for k in chosen]),
        alpha=np.array([k[3] for k in chosen], dtype=float),
    )

    fidelity = pd.DataFrame(columns=FIDELITY_COLUMNS)
    in_domain = pd.DataFrame(columns=table.columns)
    if ground_truth_codes_path:
        gt_ids, inverted = load_codes(ground_truth_codes_path)
        gt_target_ids, gt_targets = read_prepared_targets(ground_truth_dir)
        in_domain, _ = identity_sweep(
            gt_targets[[gt_target_ids.index(i) for i in gt_ids]],
            gt_ids,
            inverted,
            space,
            G,
            families,
            backend,
            alphas=alphas,
            progress=cfg["progress"],
            **truncation(cfg),
        )
        per_image_z = torch.load(pathlib.Path(ground_truth_dir) / "z.pt", map_location="cpu", weights_only=True)
        z = torch.cat([per_image_z[i] for i in gt_ids]).to(device_of(cfg))
        truth = true_codes(space, z, G, base_size=cfg["inversion"]["base_size"], **truncation(cfg))
        fidelity = edit_fidelity(
            inverted,
            truth,
            space,
            G,
            families,
            image_ids=gt_ids,
            distance=resized_perceptual(cfg, net=net, fast=True),
            alphas=cfg["editing"]["ground_truth"]["alphas"] or alphas,
            **truncation(cfg),
        )
    fidelity[FIDELITY_COLUMNS].to_csv(out / FIDELITY_FILE, index=False)
    in_domain.to_csv(out / IDENTITY_FILES["identity_in_domain"], index=False)

    grids = out / "grids"
    grids.mkdir(parents=True, exist_ok=True)
    for family, directions in families.items():
        rows = [
            (f"{image_id} {name}", torch.stack([kept[(family, name, image_id, a)] for a in alphas]))
            for name in directions.names
            for image_id in keep_ids
            if image_id in grid_ids
        ]
        if rows:
            # 0.9 in at 150 dpi, about 2x the mini profile's 64 px: the default 1.2 in made these PNGs 5 MB and 6 s
            # to write
            editing_grid(
                rows, column_labels=[f"{a:+.1f}" for a in alphas], path=grids / f"{family}.png", cell_inches=0.9
            )


def editing_tables_stage(cfg: Mapping[str, Any], *, edits_dirs: Mapping[str, str], references_dir, tables_dir) -> None:
    """The editing tables (benchmarks.statistics.editing): floors and ceilings of each metric and whether it is
    informative per space, realism per |alpha|, ground-truth fidelity per alpha, identity at matched edit
    strength, and the verdicts for every configured pair, with the margins of statistics.equivalence.
    edits_dirs: space name -> edits/<slug>."""
    from benchmarks.report.tables import to_markdown, write_table
    from benchmarks.statistics import editing

    out, ref = pathlib.Path(tables_dir), pathlib.Path(references_dir)
    out.mkdir(parents=True, exist_ok=True)
    read = lambda name: pd.concat(
        [pd.read_csv(pathlib.Path(d) / name, dtype={"image_id": str}) for d in edits_dirs.values()],  # noqa: E731
        ignore_index=True,
    )
    fidelity = read(FIDELITY_FILE)
    baselines = pd.read_csv(ref / BASELINES_FILE, dtype={"image_id": str})
    realism_baselines = pd.read_csv(ref / "realism_baselines.csv")
    reference = np.load(ref / REFERENCE_FILE)["features"]
    realism = {}
    for space, d in edits_dirs.items():
        with np.load(pathlib.Path(d) / REALISM_FILE) as r:
            realism[space] = {k: r[k] for k in r.files}
    kids = editing.kid_by_alpha(realism, reference)
    s = cfg["statistics"]
    at_alpha = cfg["editing"]["matched_strength"]["at_alpha"]
    per_image, flags, matched_tables, change_tables = [], [], {}, {}
    for metric, name in IDENTITY_FILES.items():  # each target set's identity sweep, with its own floor
        identity = read(name)
        if identity.empty:
            continue
        floor = editing.identity_floor(baselines, metric=metric)
        changes = editing.attribute_changes(identity, floor=floor)
        matched = editing.identity_at_levels(changes, editing.matched_levels(changes, at_alpha=at_alpha), floor=floor)
        # fidelity and realism are judged once, with the real targets' identity
        set_fidelity, set_kids = (fidelity, kids) if metric == "identity" else (fidelity.iloc[0:0], kids.iloc[0:0])
        flags.append(
            editing.informative_flags(
                baselines,
                identity,
                set_fidelity,
                set_kids,
                realism_baselines,
                floor=floor,
                min_separation=s["min_separation"],
                identity_metric=metric,
            )
        )
        per_image.append(editing.per_image_metrics(identity, set_fidelity, matched, floor=floor, metric=metric))
        matched_tables[metric], change_tables[metric] = matched, changes
    flags, per_image = pd.concat(flags, ignore_index=True), pd.concat(per_image, ignore_index=True)
    matched, changes = matched_tables["identity"], change_tables["identity"]
    verdicts = editing.verdict_table(
        per_image,
        realism,
        reference,
        flags,
        [tuple(p) for p in s["pairs"]],
        samples=s["bootstrap_samples"],
        confidence=s["confidence"],
        seed=cfg["seed"],
        margin_fraction=s["equivalence"]["fraction"],
        metric_margin_fractions=s["equivalence"]["metrics"],
    )
    summary = baselines.groupby(["metric", "reference", "kind"], as_index=False)["value"].median()
    summary = pd.concat(
        [summary, realism_baselines.rename(columns={"kid": "value"}).assign(metric="realism_kid")], ignore_index=True
    )
    matched_summary = matched.groupby(["space", "direction"], as_index=False).agg(
        level=("level", "first"), reached=("reached", "mean"), identity=("similarity", "mean")
    )
    fidelity_summary = fidelity.groupby(["space", "alpha"], as_index=False)[FIDELITY_SCORES].mean()
    tables = {
        "editing_verdicts": verdicts,
        "editing_informative": flags,
        "editing_baselines": summary,
        "realism": kids,
        "edit_fidelity": fidelity_summary,
        "matched_identity": matched_summary,
    }
    for name, frame in tables.items():
        write_table(frame, out / f"{name}.csv", markdown=to_markdown(frame, float_format="{:.4g}"))
    per_image.to_csv(out / "editing_per_image.csv", index=False)
    changes.to_csv(out / "attribute_changes.csv", index=False)
