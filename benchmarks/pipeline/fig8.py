"""The Fig. 8 section (paper §4, "Editing comparison on another dataset"): a second generator (the paper: genforce's
StyleGAN1 LSUN Cat 256) with its own targets, each inverted into the compared spaces (F/Z+ and BDInvert's F/W+) and
edited along this generator's GANSpace components, shown as one editing grid per component with a small table.

The section runs the main pipeline's own stages (build_generator, prepare_targets_stage, directions_stage,
encoder_stage, invert_stage) on `section_config(cfg)`: the run's config with the section's generator, targets, spaces,
base size, GANSpace settings, alphas and inversion overrides in place of the main ones. So losses, budget and
reconstruction metrics are recorded exactly as for Table 1. What is the section's own: the edit sweep scored without a
face metric (`edit_stage`: the image change of every edit against the inversion's reconstruction, i.e. the edit
strength per alpha) and the grids and table (`summary_stage`).

Files under results/<run>/fig8/: generator.pt, targets/, directions/ganspace_<domain>.npz, [encoder.pt],
inversion/<slug>/ (as the main run's), edits/<slug>/edits.csv and images/<direction>/<image_id>_<alpha>.png,
grids/<direction>.png, table.csv and table.md.
"""

from __future__ import annotations

import copy
import importlib
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

import spaces
from benchmarks.pipeline import ensure_parent, pipeline_generator, resized_perceptual, truncation
from benchmarks.pipeline.evaluate import load_codes, save_png
from fzplus.config import FIG8, with_overrides

EDIT_COLUMNS = ["space", "direction", "image_id", "alpha", "change_perceptual", "change_mse", "identity"]
CHANGES = {"change_perceptual": "perceptual", "change_mse": "mse"}  # edits.csv column -> its name in the table
FAMILY = "ganspace"  # the paper's Fig. 8 edits along GANSpace components
GRID_CELL_INCHES = 1.2  # benchmarks.report.figures.editing_grid's default: 180 px cells at 150 dpi


def section_config(cfg: Mapping[str, Any]) -> dict:
    """The config the section's stages read: `cfg` with the section's generator and targets, its spaces and base size
    (null: the main run's), inversion overrides on the main inversion section, GANSpace overrides on the main
    directions.ganspace (GANSpace only), its alphas (null: editing.alphas) and its encoder file as encoder.pretrained.
    Everything else (seed, device, perceptual distance, the unit of alpha, the inversion's losses and schedule) is
    the main run's. It has no `fig8` key, so that the assets it names are the section's only."""
    section = cfg[FIG8]
    out = copy.deepcopy({key: value for key, value in cfg.items() if key != FIG8})
    out.update(generator=copy.deepcopy(section["generator"]), targets=copy.deepcopy(section["targets"]))
    out["inversion"] = with_overrides(cfg["inversion"], section["inversion"])
    out["inversion"].update(
        spaces=list(section["spaces"]), base_size=section["base_size"] or cfg["inversion"]["base_size"]
    )
    out["directions"]["families"] = [FAMILY]
    out["directions"][FAMILY] = with_overrides(cfg["directions"][FAMILY], section["ganspace"])
    out["editing"]["alphas"] = list(section["alphas"] or cfg["editing"]["alphas"])
    out["encoder"]["pretrained"] = section["encoder"]
    return out


def section_stage(cfg: Mapping[str, Any], *, stage: str, **kwargs) -> None:
    """Run the main pipeline's stage `stage` ("module.function" of benchmarks.pipeline, e.g. "evaluate.invert_stage")
    with the section's config and the rule's keyword arguments."""
    module_name, function_name = stage.rsplit(".", 1)
    function = getattr(importlib.import_module(f"benchmarks.pipeline.{module_name}"), function_name)
    function(section_config(cfg), **kwargs)


def image_name(image_id: str, alpha: float) -> str:
    """The file of one edit of one image in edits/<slug>/images/<direction>/."""
    return f"{image_id}_{alpha:+g}.png"


def edit_stage(
    cfg: Mapping[str, Any], *, space_name: str, generator_path, codes_path, directions_path, out_dir, targets_dir=None
) -> None:
    """Every GANSpace component x alpha applied to one space's inversions (fzplus.edits.protocol.edit_sweep, the main
    run's editing protocol): each edited image as saved (PNG, images/<direction>/), and in edits.csv its change from
    the inversion's reconstruction (recon/ beside codes_path, the images Table 1 scores): the perceptual distance
    (the run's, resized as the inversion's loss) and the MSE on [-1, 1]. Both are computed on the images as saved, so
    an alpha = 0 edit is the reconstruction itself and scores 0. With fig8.identity (targets_dir given): `identity`,
    the edit's identity similarity to its target (benchmarks.metrics.identity, the run's backend; NaN where a face
    is not found); NaN without it."""
    from benchmarks.metrics.reconstruction import mse, read_images
    from fzplus.edits.directions import Directions
    from fzplus.edits.protocol import edit_sweep
    from fzplus.images import to_float, to_uint8

    section = section_config(cfg)
    G = pipeline_generator(generator_path, section)
    space = spaces.get(space_name)
    ids, codes = load_codes(codes_path)
    recon_dir = pathlib.Path(codes_path).parent / "recon"
    recons = to_float(read_images([recon_dir / f"{image_id}.png" for image_id in ids]))
    distance = resized_perceptual(section, fast=True)
    identity = edit_identity(section, targets_dir=targets_dir, image_ids=ids) if cfg[FIG8]["identity"] else None
    out, rows = pathlib.Path(out_dir), []
    for name, alpha, part, images in edit_sweep(
        codes,
        space,
        G,
        Directions.load(directions_path),
        alphas=section["editing"]["alphas"],
        **truncation(section),
    ):
        saved = to_float(to_uint8(images))  # scored as the PNG stores it
        folder = out / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        part_ids = ids[part]
        for image_id, image in zip(part_ids, saved):
            save_png(image, folder / image_name(image_id, alpha))
        with torch.no_grad():
            perceptual = distance(saved, recons[part]).double().cpu().numpy()
        rows.append(
            pd.DataFrame(
                dict(
                    space=space.name,
                    direction=name,
                    image_id=part_ids,
                    alpha=alpha,
                    change_perceptual=perceptual,
                    change_mse=mse(saved, recons[part]),
                    identity=identity(saved, part) if identity else np.nan,
                )
            )
        )
    pd.concat(rows, ignore_index=True)[EDIT_COLUMNS].to_csv(ensure_parent(out / "edits.csv"), index=False)


def edit_identity(section: Mapping[str, Any], *, targets_dir, image_ids: Sequence[str]) -> Callable:
    """score(edited [n, 3, R, R], part: slice of image_ids) -> [n] identity similarity of each edit to its target,
    the targets embedded once."""
    from benchmarks.metrics.identity import identity_similarity
    from benchmarks.pipeline.editing import identity_backend
    from fzplus.targets import read_prepared_targets

    if targets_dir is None:
        raise ValueError("fig8.identity is on: the section's edit stage needs targets_dir, the targets to compare with")
    backend = identity_backend(section)
    target_ids, targets = read_prepared_targets(targets_dir)
    embeddings, detected = backend.embed(targets[[target_ids.index(i) for i in image_ids]])

    def score(edited: torch.Tensor, part: slice) -> np.ndarray:
        scores = identity_similarity(backend, None, edited, embedded_targets=(embeddings[part], detected[part]))
        return scores["similarity"].to_numpy(dtype=float)

    return score


def fig8_table(metrics: pd.DataFrame, edits: pd.DataFrame, *, spaces_order: Sequence[str]) -> pd.DataFrame:
    """One row per space: Table 1's columns (n, mean and sd of MSE, SSIM and perceptual distance, steps per image)
    and the edit strength, the mean change from the reconstruction over images and components at each |alpha| > 0
    (columns edit_perceptual_at_<|alpha|>, edit_mse_at_<|alpha|>); where edits.csv has identity scores, their
    mean at each |alpha| including 0, the reconstruction (identity_at_<|alpha|>; faces not found left out)."""
    from benchmarks.report.tables import table1

    table = table1(metrics, spaces_order=spaces_order)
    sized = edits.assign(size=edits.alpha.abs())
    strength = sized[sized.alpha != 0].groupby(["space", "size"])[list(CHANGES)].mean().unstack("size")
    strength.columns = [f"edit_{CHANGES[column]}_at_{size:g}" for column, size in strength.columns]
    if "identity" in sized and sized["identity"].notna().any():
        identity = sized.groupby(["space", "size"])["identity"].mean().unstack("size")
        identity.columns = [f"identity_at_{size:g}" for size in identity.columns]
        strength = strength.join(identity)
    ordered = sorted(strength.columns, key=lambda c: (float(c.rsplit("_", 1)[1]), c))
    return table.merge(strength[ordered], left_on="space", right_index=True, how="left")


def summary_stage(
    cfg: Mapping[str, Any], *, targets_dir, inversion_dirs: Mapping[str, str], edits_dirs: Mapping[str, str], out_dir
) -> None:
    """The section's table (table.csv, table.md: fig8_table) and one editing grid per component (grids/<direction>.png):
    a row per target and space (all targets of the section, each with every space in turn), the target in the first
    column, then the edits at every alpha (alpha 0: the reconstruction). inversion_dirs, edits_dirs: space name ->
    that space's folder."""
    from benchmarks.metrics.reconstruction import read_images
    from benchmarks.report.figures import editing_grid
    from benchmarks.report.tables import to_markdown, write_table
    from fzplus.targets import IMAGES_DIR, read_targets_table

    section = section_config(cfg)
    names, alphas = section["inversion"]["spaces"], section["editing"]["alphas"]
    read = lambda folders, file: pd.concat(  # noqa: E731
        [pd.read_csv(pathlib.Path(folders[name]) / file, dtype={"image_id": str}) for name in names],
        ignore_index=True,
    )
    edits = read(edits_dirs, "edits.csv")
    table = fig8_table(read(inversion_dirs, "metrics.csv"), edits, spaces_order=names)
    out = pathlib.Path(out_dir)
    write_table(table, out / "table.csv", markdown=to_markdown(table, float_format="{:.4g}"))
    ids = list(read_targets_table(targets_dir)["image_id"])
    targets = read_images([pathlib.Path(targets_dir) / IMAGES_DIR / f"{image_id}.png" for image_id in ids])
    for direction in edits.direction.unique():
        rows = [
            (
                f"{image_id} {name}",
                np.concatenate(
                    [
                        targets[k : k + 1],
                        read_images(
                            [
                                pathlib.Path(edits_dirs[name]) / "images" / direction / image_name(image_id, alpha)
                                for alpha in alphas
                            ]
                        ),
                    ]
                ),
            )
            for k, image_id in enumerate(ids)
            for name in names
        ]
        editing_grid(
            rows,
            column_labels=["target", *(f"{alpha:+.1f}" for alpha in alphas)],
            path=out / "grids" / f"{direction}.png",
            cell_inches=GRID_CELL_INCHES,
            dpi=cfg["report"]["dpi"],
        )
