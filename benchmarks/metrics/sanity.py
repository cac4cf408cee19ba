"""Floors and ceilings for editing metrics: is a metric informative at all on these images?

A metric value means nothing alone. A face-identity similarity of 0.85 is good if unrelated people score
0.5, and worthless if a uniform gray image also scores 0.85 (a detector that "finds" a face in anything,
or an embedding that sees mostly brightness). So every metric is published beside what it gives for
reference pairs built from the targets themselves:
  ceilings: near-copies that keep the face (a JPEG round trip, a mirror image); a reconstruction cannot
            be expected to beat them by much.
  floors:   images with no face detail of the target (another target, gray, a heavy blur, noise); a
            metric that scores reconstructions no better than these cannot say anything about them.
A metric whose reconstructions are not clearly above the best floor is flagged uninformative, and no
verdict (e.g. "method A preserves identity better than B") is drawn from it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import binomtest

from fzplus.images import to_float, to_uint8

REFERENCES: dict[str, str] = {
    "jpeg": "ceiling",  # JPEG round trip at PIL quality 75: slight blocking and colour loss, same face
    "mirror": "ceiling",  # horizontal flip: the same person; faces are nearly symmetric
    "other": "floor",  # another target (seeded derangement): a different person, same kind of image
    "gray": "floor",  # uniform 0 (mid gray): no face at all
    "blur": "floor",  # 8x8 box downsample, bicubic back up: keeps colour layout, no face detail
    "noise": "floor",  # uniform noise in [-1, 1], seeded
}
KINDS = ("ceiling", "floor")
JPEG_QUALITY = 75
BLUR_SIZE = 8


def derangement(n: int, *, seed: int = 0) -> np.ndarray:
    """A seeded permutation with perm[i] != i for every i (one random cycle through all n), so that the
    "other" floor never compares an image with itself, which would make it a ceiling."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


def _jpeg(images: torch.Tensor) -> torch.Tensor:
    """In-memory JPEG round trip of to_uint8 images (no files: the result depends only on the pixels)."""
    decoded = []
    for array in to_uint8(images):
        buffer = io.BytesIO()
        Image.fromarray(array, "RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
        buffer.seek(0)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return to_float(np.stack(decoded))


def _blur(images: torch.Tensor) -> torch.Tensor:
    """Box-downsample to 8x8 (area average) and bicubic back up, clipped to [-1, 1] (bicubic overshoots)."""
    height, width = images.shape[-2:]
    small = F.interpolate(images, size=(min(BLUR_SIZE, height), min(BLUR_SIZE, width)), mode="area")
    return F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False).clamp(-1.0, 1.0)


def _check_names(names: Sequence[str]) -> list[str]:
    names = list(names)
    unknown = [name for name in names if name not in REFERENCES]
    if unknown:
        raise ValueError(f"unknown references {unknown}; known: {sorted(REFERENCES)}")
    return names


def reference_images(
    images: torch.Tensor, *, seed: int = 0, names: Sequence[str] = tuple(REFERENCES)
) -> dict[str, torch.Tensor]:
    """images [N, 3, R, R] float in [-1, 1] -> {name: reference images [N, 3, R, R] float32 in [-1, 1]},
    row i being the reference for image i. Deterministic for a seed ("other" and "noise" use it)."""
    names = _check_names(names)
    images = to_float(images)
    n = len(images)
    if "other" in names and n < 2:
        raise ValueError(f"reference 'other' pairs each image with another target and needs N >= 2, got N={n}")
    made = {}
    for name in names:
        if name == "jpeg":
            made[name] = _jpeg(images)
        elif name == "mirror":
            made[name] = torch.flip(images, dims=[3])
        elif name == "other":
            made[name] = images[torch.from_numpy(derangement(n, seed=seed))]
        elif name == "gray":
            made[name] = torch.zeros_like(images)
        elif name == "blur":
            made[name] = _blur(images)
        elif name == "noise":
            generator = torch.Generator().manual_seed(seed)
            made[name] = torch.rand(images.shape, generator=generator) * 2.0 - 1.0
    return made


def reference_scores(
    score: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
    images: torch.Tensor,
    *,
    image_ids: Sequence[str],
    seed: int = 0,
    names: Sequence[str] = tuple(REFERENCES),
) -> pd.DataFrame:
    """The metric on (image, reference) pairs: a long frame with columns reference, kind, image_id, value.
    `score(targets, others)` returns one value per pair, [N], exactly as it does for reconstructions."""
    image_ids = [str(image_id) for image_id in image_ids]
    if len(image_ids) != len(images) or len(set(image_ids)) != len(image_ids):
        raise ValueError(f"image_ids must be {len(images)} distinct ids, one per image, got {len(image_ids)}")
    rows = []
    for name, others in reference_images(images, seed=seed, names=names).items():
        values = np.asarray(score(images, others), dtype=np.float64)
        if values.shape != (len(images),):
            raise ValueError(
                f"score must return one value per image, shape ({len(images)},); got {values.shape} "
                f"for reference {name!r}"
            )
        rows.append(pd.DataFrame(dict(reference=name, kind=REFERENCES[name], image_id=image_ids, value=values)))
    return pd.concat(rows, ignore_index=True)


def _sign(better: str) -> float:
    """+1 or -1: values times the sign are higher-is-better, so one code path serves both directions."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    return 1.0 if better == "higher" else -1.0


def _recon_series(recon, ids: pd.Index) -> pd.Series:
    """recon as a Series indexed like `ids`: a Series is aligned by its image_id index (every id needed);
    an array must be in the order the ids first appear in the references frame."""
    if isinstance(recon, pd.Series):
        recon = recon.set_axis(recon.index.astype(str))
        missing = ids.difference(recon.index)
        if missing.size or recon.index.duplicated().any():
            raise ValueError(f"recon Series must be indexed by distinct image_ids; missing: {list(missing)[:5]}")
        return recon.reindex(ids).astype(np.float64)
    array = np.asarray(recon, dtype=np.float64)
    if array.shape != (len(ids),):
        raise ValueError(
            f"recon array must hold {len(ids)} values in the references' image_id order, got shape {array.shape}"
        )
    return pd.Series(array, index=ids)


def informative_check(
    recon, references: pd.DataFrame, *, better: str, min_separation: float = 0.25, alpha: float = 0.05
) -> dict:
    """Is a per-image metric informative on these images? recon: per-image values of the reconstructions,
    a pd.Series indexed by image_id or an array in the order the ids first appear in `references` (the
    frame from `reference_scores`). Informative iff (a) the weakest ceiling scores above the best floor,
    (b) reconstructions beat the best floor on significantly more than half the images (one-sided sign
    test, ties dropped, p < alpha) and (c) they are at least `min_separation` of the way from that floor
    to that ceiling, in medians. NaNs are dropped. Values in the result are in the metric's own units."""
    sign = _sign(better)
    ids = pd.Index(references.image_id.astype(str).drop_duplicates())
    recon = _recon_series(recon, ids) * sign
    table = references.assign(image_id=references.image_id.astype(str), value=references.value * sign)
    values = table.pivot(index="image_id", columns="reference", values="value").reindex(ids)
    kinds = table.drop_duplicates("reference").set_index("reference").kind
    medians = values.median(skipna=True)
    floors = medians[kinds[kinds == "floor"].index].dropna()
    ceilings = medians[kinds[kinds == "ceiling"].index].dropna()
    result = dict(
        informative=False,
        reason="",
        best_floor=None,
        best_floor_median=np.nan,
        ceiling=None,
        ceiling_median=np.nan,
        recon_median=np.nan,
        separation=np.nan,
        sign_test_p=np.nan,
    )
    if recon.notna().sum() < 2:
        return {**result, "reason": f"fewer than 2 reconstruction values ({recon.notna().sum()}) after dropping NaNs"}
    if floors.empty or ceilings.empty:
        return {**result, "reason": "no floor or no ceiling reference with values; nothing to compare against"}
    floor, ceiling = floors.idxmax(), ceilings.idxmin()
    recon_median, floor_median, ceiling_median = recon.median(), floors[floor], ceilings[ceiling]
    paired = pd.DataFrame(dict(recon=recon, floor=values[floor])).dropna()
    wins, losses = int((paired.recon > paired.floor).sum()), int((paired.recon < paired.floor).sum())
    p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    span = ceiling_median - floor_median
    separation = (recon_median - floor_median) / span if span > 0 else np.nan
    result.update(
        best_floor=floor,
        best_floor_median=float(floor_median * sign),
        ceiling=ceiling,
        ceiling_median=float(ceiling_median * sign),
        recon_median=float(recon_median * sign),
        separation=float(separation),
        sign_test_p=float(p),
    )
    if not span > 0:
        reason = f"the weakest ceiling ({ceiling}) does not score above the best floor ({floor})"
    elif not p < alpha:
        reason = (
            f"reconstructions beat the best floor ({floor}) on {wins} of {wins + losses} images, not "
            f"significantly more than half (sign test p = {p:.3g} >= {alpha})"
        )
    elif not separation >= min_separation:
        reason = (
            f"reconstructions are only {separation:.2f} of the way from the floor ({floor}) to the "
            f"ceiling ({ceiling}), below {min_separation}"
        )
    else:
        return {**result, "informative": True, "reason": "reconstructions score clearly above the floor"}
    return {**result, "reason": reason}


def set_metric_informative(
    recon_value: float,
    floor_values: Mapping[str, float],
    ceiling_values: Mapping[str, float],
    *,
    better: str,
    min_separation: float = 0.25,
) -> dict:
    """The same check for set metrics (KID, FID: one value per image set, so no sign test): informative
    iff the weakest ceiling beats the best floor and the reconstructions are at least `min_separation` of
    the way from that floor to that ceiling. NaN references are dropped; values stay in original units."""
    sign = _sign(better)
    floors = pd.Series(floor_values, dtype=np.float64).dropna() * sign
    ceilings = pd.Series(ceiling_values, dtype=np.float64).dropna() * sign
    result = dict(
        informative=False,
        reason="",
        best_floor=None,
        best_floor_value=np.nan,
        ceiling=None,
        ceiling_value=np.nan,
        recon_value=float(recon_value),
        separation=np.nan,
    )
    if floors.empty or ceilings.empty or not np.isfinite(recon_value):
        return {**result, "reason": "the reconstruction value, the floors or the ceilings are missing (NaN)"}
    floor, ceiling = floors.idxmax(), ceilings.idxmin()
    span = ceilings[ceiling] - floors[floor]
    separation = (recon_value * sign - floors[floor]) / span if span > 0 else np.nan
    result.update(
        best_floor=floor,
        best_floor_value=float(floors[floor] * sign),
        ceiling=ceiling,
        ceiling_value=float(ceilings[ceiling] * sign),
        separation=float(separation),
    )
    if not span > 0:
        return {**result, "reason": f"the weakest ceiling ({ceiling}) does not score above the best floor ({floor})"}
    if not separation >= min_separation:
        return {
            **result,
            "reason": f"reconstructions are only {separation:.2f} of the way from the floor "
            f"({floor}) to the ceiling ({ceiling}), below {min_separation}",
        }
    return {**result, "informative": True, "reason": "reconstructions score clearly above the floor"}


__all__ = [
    "REFERENCES",
    "derangement",
    "reference_images",
    "reference_scores",
    "informative_check",
    "set_metric_informative",
]
