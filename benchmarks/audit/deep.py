"""Deep audit: re-run the inversion of a few images of one space and compare codes and loss traces bit for bit.

    checks = deep_check("results/ci", space="F/Z+", images=2, config=run_config("results/ci"))

The re-run calls the pipeline's own invert stage (benchmarks.pipeline.evaluate.invert_stage) on the run's
generator, encoder, P_N statistics and (for a method on a pivot) the run's pivot inversion of the same images,
into a temporary folder, with the invert rule's thread count. Bitwise equality is what the same code on the
same machine and threads gives; on another CPU model, torch build or thread count the last bits may differ,
so the machine is checked and named first.

The images are re-run in the run's own batches: N is rounded up to whole batches of inversion.batch_size (the
first batches, in targets.csv order), and every re-run image is compared. Each image is optimised on its own,
but a batch of another size rounds differently in float32: on the ci run, F/Z+ re-run on 2 of its batch of 4
gave codes within 1.7e-5 of the run's and loss traces within 1e-6, not equal; re-run on the whole batch, equal.
"""

from __future__ import annotations

import contextlib
import csv
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

import spaces
from benchmarks.audit.checks import Check
from benchmarks.audit.manifest import read_provenance
from benchmarks.pipeline.evaluate import invert_stage
from fzplus.config import load_config
from fzplus.encoders import KINDS as ENCODER_KINDS
from fzplus.provenance import device_info, package_versions
from fzplus.targets import CSV_NAME, IMAGES_DIR, read_targets_table

INVERT_THREADS = 1  # the `threads:` of the invert rule (workflow/rules/inversion.smk)
INVERSION_FILES = ("codes.pt", "losses.csv", "budget.csv")


def run_config(results_dir: str | os.PathLike) -> dict[str, Any]:
    """The config the run recorded in provenance.json, validated (defaults of newer keys filled in)."""
    return load_config(read_provenance(results_dir)["config"])


def deep_images(ids: Sequence[str], *, images: int, batch_size: int) -> list[str]:
    """The first `images` ids rounded up to whole batches of the run's inversion (all when fewer)."""
    batches = -(-images // batch_size)
    return list(ids[: batches * batch_size])


def _subset_csv(source: pathlib.Path, target: pathlib.Path, ids: Sequence[str]) -> None:
    """Copy the header and the rows whose first field is one of `ids`, byte for byte."""
    wanted = set(ids)
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines[1:] if next(csv.reader([line]))[0] in wanted]
    target.write_text(lines[0] + "".join(kept), encoding="utf-8")


def _subset_targets(source: pathlib.Path, target: pathlib.Path, ids: Sequence[str]) -> pathlib.Path:
    (target / IMAGES_DIR).mkdir(parents=True)
    _subset_csv(source / CSV_NAME, target / CSV_NAME, ids)
    for image_id in ids:
        shutil.copy2(source / IMAGES_DIR / f"{image_id}.png", target / IMAGES_DIR / f"{image_id}.png")
    return target


def _subset_inversion(source: pathlib.Path, target: pathlib.Path, ids: Sequence[str]) -> pathlib.Path:
    """The run's inversion (a pivot space's) restricted to `ids`, in write_inversion's format."""
    target.mkdir(parents=True)
    codes = torch.load(source / "codes.pt", map_location="cpu", weights_only=True)
    torch.save({image_id: codes[image_id] for image_id in ids}, target / "codes.pt")
    for name in INVERSION_FILES[1:]:
        _subset_csv(source / name, target / name, ids)
    return target


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _machine_check(results_dir: pathlib.Path) -> Check:
    """The run's CPU, GPUs and torch build against this machine's: bitwise equality is only expected there."""
    record = read_provenance(results_dir)
    device = record.get("device") or {}
    then = (device.get("cpu_model"), device.get("gpus"), (record.get("packages") or {}).get("torch"))
    here = device_info()
    now = (here["cpu_model"], here["gpus"], package_versions(["torch"])["torch"])
    describe = lambda m: f"cpu {m[0]!r}, gpus {m[1]}, torch {m[2]}"
    return Check("deep", "provenance.json: device", "machine", f"{describe(now)} (here)", describe(then), then == now)


def _code_checks(run: pathlib.Path, rerun: pathlib.Path, ids: Sequence[str], *, subject: str) -> list[Check]:
    before = torch.load(run, map_location="cpu", weights_only=True)
    after = torch.load(rerun, map_location="cpu", weights_only=True)
    checks = []
    for image_id in ids:
        if image_id not in before:
            checks.append(Check("deep", subject, image_id, "the image's codes", "missing", ok=False))
            continue
        for name in sorted(set(before[image_id]) | set(after[image_id])):
            old, new = before[image_id].get(name), after[image_id].get(name)
            item = f"{image_id} | {name}"
            if old is None or new is None or old.shape != new.shape or old.dtype != new.dtype:
                shown = lambda t: "absent" if t is None else f"{t.dtype} {tuple(t.shape)}"
                checks.append(Check("deep", subject, item, f"{shown(new)} (re-run)", shown(old), ok=False))
                continue
            difference = float((old.double() - new.double()).abs().max()) if old.numel() else 0.0
            ok = torch.equal(old, new)
            found = "bitwise equal" if ok else f"differs (max |difference| {difference:.3g})"
            checks.append(Check("deep", subject, item, "the re-run's codes", found, ok, difference, "bitwise"))
    return checks


def _loss_checks(run: pathlib.Path, rerun: pathlib.Path, ids: Sequence[str], *, subject: str) -> list[Check]:
    before = pd.read_csv(run, dtype={"image_id": str})
    after = pd.read_csv(rerun, dtype={"image_id": str})
    terms = [c for c in after.columns if c not in ("image_id", "step")]
    checks = []
    for image_id in ids:
        old = before[before.image_id == image_id].sort_values("step")
        new = after[after.image_id == image_id].sort_values("step")
        for term in terms:
            item = f"{image_id} | {term}"
            if term not in old.columns or len(old) != len(new):
                found = f"{len(old)} steps" + ("" if term in old.columns else f", no column {term!r}")
                checks.append(Check("deep", subject, item, f"{len(new)} steps (re-run)", found, ok=False))
                continue
            a, b = old[term].to_numpy(dtype=np.float64), new[term].to_numpy(dtype=np.float64)
            ok = bool(np.array_equal(a, b, equal_nan=True))
            gaps = np.abs(a - b)
            difference = float(np.nanmax(gaps)) if np.isfinite(gaps).any() else 0.0
            found = "bitwise equal" if ok else f"differs (max |difference| {difference:.3g})"
            checks.append(Check("deep", subject, item, "the re-run's trace", found, ok, difference, "bitwise"))
    return checks


def deep_check(results_dir: str | os.PathLike, *, space: str, images: int, config: Mapping[str, Any]) -> list[Check]:
    """Re-run the first `images` images (in targets.csv order, rounded up to whole batches: deep_images) of
    `space` (a name or slug) and compare with the run's inversion/<slug>/codes.pt and losses.csv. config: the
    run's config (run_config)."""
    root = pathlib.Path(results_dir)
    plugin = spaces.get(space)
    run_dir = root / "inversion" / plugin.slug
    for name in INVERSION_FILES:
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} does not exist: the run has no inversion of {plugin.name}")
    every = list(read_targets_table(root / "targets")["image_id"])
    ids = deep_images(every, images=images, batch_size=config["inversion"]["batch_size"])
    with tempfile.TemporaryDirectory(prefix="fzplus-deep-audit-") as tmp:
        work = pathlib.Path(tmp)
        encoder = ENCODER_KINDS[plugin.encoder_kind].file if plugin.encoder_kind else None
        pivot = plugin.pivot
        with _threads(INVERT_THREADS):
            invert_stage(
                {**config, "progress": False},
                space_name=plugin.name,
                generator_path=root / "generator.pt",
                targets_dir=_subset_targets(root / "targets", work / "targets", ids),
                out_dir=work / "inversion",
                encoder_path=root / encoder if encoder else None,
                pn_stats_path=root / "pn_stats.npz" if plugin.needs_pn_stats else None,
                pivot_dir=_subset_inversion(root / "inversion" / pivot.slug, work / "pivot", ids) if pivot else None,
            )
        relative = f"inversion/{plugin.slug}"
        return [
            _machine_check(root),
            *_code_checks(run_dir / "codes.pt", work / "inversion" / "codes.pt", ids, subject=f"{relative}/codes.pt"),
            *_loss_checks(
                run_dir / "losses.csv", work / "inversion" / "losses.csv", ids, subject=f"{relative}/losses.csv"
            ),
        ]
