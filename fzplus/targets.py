"""Target images: sample them from a folder, check them, bring them to the generator's resolution.

    df = prepare_targets("resources/celebahq-stargan-v2", "results/mini/targets", resolution=64, count=None, seed=0)
    ids, images = read_prepared_targets("results/mini/targets")    # images [N, 3, R, R] in [-1, 1]

Layout written under out_dir: images/<image_id>.png (8-bit RGB, resolution x resolution) and targets.csv
(image_id, source_path, source_sha256, width, height, mode, conversions). image_id is the file stem; keep
it a string when reading the CSV elsewhere (CelebA-HQ ids have leading zeros).

Sampling: the folder's .jpg/.jpeg/.png files sorted by name, then `count` of them drawn without
replacement by numpy's default_rng(seed), kept in name order, so a sample depends only on the file names
and the seed. Inputs are checked before anything is written: unreadable files, translucent alpha,
non-square (unless aligned) or too small images are errors naming the file; grayscale, palette, 16-bit and other
modes are converted to RGB, with a warning and a note in the `conversions` column. Resizing is the inversion's
protocol (fzplus.images.resize_lanczos: PIL Lanczos on float channels), then rounded to 8 bit.

Unaligned photos: with align="ffhq" (config targets.align) each photo is first aligned the way FFHQ was
(fzplus.faces.alignment: dlib's 68 landmarks, the eye-and-mouth quad, rotated upright), any size or aspect; the
`alignment` column records the quad in the photo's pixels. A photo without a detectable face is an error
naming the file. Empty `alignment`: the image was used as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from fzplus.images import resize_lanczos, to_float, to_uint8
from fzplus.io import atomic_write

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CSV_NAME = "targets.csv"
IMAGES_DIR = "images"
CSV_COLUMNS = ("image_id", "source_path", "source_sha256", "width", "height", "mode", "conversions", "alignment")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL opens 16-bit grayscale PNGs in these
CONVERTED_MODES = {
    "L": "grayscale (L)",
    "1": "bilevel (1)",
    "P": "palette (P)",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "LAB",
    "HSV": "HSV",
    "RGBX": "RGBX",
}


class TargetImageError(ValueError):
    """A target image (or folder) that cannot be used; the message names the file and the fix."""


class TargetConversionWarning(UserWarning):
    """A target image was converted to RGB (its `conversions` entry in targets.csv says how)."""


@dataclasses.dataclass
class PreparedTarget:
    image_id: str
    source_path: str
    source_sha256: str
    width: int
    height: int
    mode: str
    conversions: list[str]
    pixels: np.ndarray  # [R, R, 3] uint8
    alignment: str = ""

    def row(self) -> dict:
        return dict(
            image_id=self.image_id,
            source_path=self.source_path,
            source_sha256=self.source_sha256,
            width=self.width,
            height=self.height,
            mode=self.mode,
            conversions="; ".join(self.conversions),
            alignment=self.alignment,
        )


# ---- choosing files -----------------------------------------------------------------------------------
def list_images(folder: str | os.PathLike) -> list[pathlib.Path]:
    """The folder's image files (.jpg/.jpeg/.png, any case), sorted by name; ids (stems) must be unique."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise TargetImageError(
            f"target folder {str(folder)!r} does not exist or is not a folder "
            "(config key targets.folder / targets.asset)"
        )
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise TargetImageError(f"target folder {folder} has no {'/'.join(IMAGE_SUFFIXES)} files")
    by_stem: dict[str, pathlib.Path] = {}
    for path in paths:
        if path.stem in by_stem:
            raise TargetImageError(
                f"{by_stem[path.stem]} and {path} have the same image id {path.stem!r}; image ids are "
                f"file stems and must be unique: rename or remove one"
            )
        by_stem[path.stem] = path
    return paths


def sample_images(paths: list[pathlib.Path], *, count: int | None, seed: int = 0) -> list[pathlib.Path]:
    """`count` of the (sorted) paths drawn with a seed, in name order; all of them for count=None."""
    paths = sorted(paths)
    if count is None or count == len(paths):
        return paths
    if not 1 <= count <= len(paths):
        raise TargetImageError(f"cannot sample {count} targets from {len(paths)} images (config key targets.count)")
    chosen = np.random.default_rng(seed).choice(len(paths), size=count, replace=False)
    return [paths[i] for i in sorted(chosen)]


# ---- one image ----------------------------------------------------------------------------------------
def _rgb_pixels(img: Image.Image, path: pathlib.Path) -> tuple[np.ndarray, list[str]]:
    """PIL image of any mode -> ([H, W, 3] uint8, notes on what was converted)."""
    mode, notes = img.mode, []
    if mode == "P" and "transparency" in img.info:
        img, notes = img.convert("RGBA"), ["palette (P) with a transparent colour -> RGBA"]
    if img.mode in ALPHA_MODES:
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[..., 3]
        if alpha.min() < 255:
            raise TargetImageError(
                f"{path}: has transparent pixels ({(alpha < 255).mean():.1%} of the image, alpha down to "
                f"{alpha.min()}); flatten it onto a background or save it without alpha first"
            )
        return np.ascontiguousarray(rgba[..., :3]), notes + [f"{mode}: fully opaque alpha channel dropped"]
    if mode in SIXTEEN_BIT_MODES:
        gray = np.asarray(img).astype(np.int64)
        if gray.min() < 0 or gray.max() > 65535:
            raise TargetImageError(
                f"{path}: integer image (mode {mode}) with values outside 0..65535; save it as 8-bit RGB"
            )
        gray8 = np.round(gray / 257.0).astype(np.uint8)  # 65535 -> 255
        return np.repeat(gray8[..., None], 3, axis=2), [f"16-bit grayscale ({mode}) -> 8-bit RGB"]
    if mode == "RGB":
        return np.asarray(img), notes
    if mode in CONVERTED_MODES:
        return np.asarray(img.convert("RGB")), [f"{CONVERTED_MODES[mode]} -> RGB"]
    raise TargetImageError(f"{path}: unsupported image mode {mode!r}; save it as 8-bit RGB")


def centre_crop(pixels: np.ndarray, *, crop: float) -> np.ndarray:
    """The centred square of side round(crop x side) of a square [H, W, 3] image (crop in (0, 1])."""
    if not 0 < crop <= 1:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    side = pixels.shape[0]
    kept = max(1, round(crop * side))
    begin = (side - kept) // 2
    return pixels[begin : begin + kept, begin : begin + kept]


def prepare_target(
    path: str | os.PathLike, *, resolution: int, crop: float = 1.0, align: str | None = None
) -> PreparedTarget:
    """Read, check, (align,) crop and resize one image file; raises TargetImageError naming the file.

    crop: the fraction of the side kept around the centre before resizing, to bring the faces to the
    generator's face size (1.0: none; see benchmarks/studies/face_layout.py). align: None (the image is an aligned
    square crop already) or "ffhq" (fzplus.faces.alignment)."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            pixels, notes = _rgb_pixels(img, path)
            mode = img.mode
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise TargetImageError(
            f"{path}: cannot be read as an image ({type(exc).__name__}: {exc}); replace or remove the file"
        ) from exc
    height, width = pixels.shape[:2]
    alignment = ""
    if align is not None:
        from fzplus.faces.alignment import NoFaceFound, align_face

        try:
            aligned = align_face(pixels, name=str(path), method=align)
        except NoFaceFound as exc:
            raise TargetImageError(str(exc)) from exc
        pixels, alignment = aligned.pixels, aligned.describe()
    elif width != height:
        raise TargetImageError(
            f"{path}: is {width}x{height} (width x height), not square; targets must be aligned square "
            f"face crops: align it first, or let the suite align it (config targets.align: ffhq)"
        )
    pixels = centre_crop(pixels, crop=crop)
    if pixels.shape[0] < resolution:
        cropped = (
            f" (its {'aligned ' if alignment else ''}centre crop of {crop}, {pixels.shape[0]} px)"
            if crop < 1 or alignment
            else ""
        )
        raise TargetImageError(
            f"{path}: is {width}x{height}{cropped}, smaller than the generator resolution {resolution}x{resolution}; "
            f"upsampling would invent detail: use a larger source image"
        )
    for note in notes:
        warnings.warn(f"{path}: {note}", TargetConversionWarning, stacklevel=2)
    x = (
        torch.from_numpy(np.ascontiguousarray(pixels).astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    )  # [1, 3, H, W]
    y = resize_lanczos(x, resolution)
    resized = to_uint8(y)[0]
    assert resized.shape == (resolution, resolution, 3)
    return PreparedTarget(
        image_id=path.stem,
        source_path=str(path.resolve()),
        source_sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        mode=mode,
        conversions=notes,
        pixels=resized,
        alignment=alignment,
    )


# ---- the targets folder -------------------------------------------------------------------------------
def prepare_targets(
    source_folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resolution: int,
    count: int | None = None,
    seed: int = 0,
    crop: float = 1.0,
    align: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Sample, check and resize targets; write out_dir/images/<id>.png and out_dir/targets.csv. Every image
    is checked before anything is written; all unusable files are reported in one error."""
    paths = sample_images(list_images(source_folder), count=count, seed=seed)
    prepared, problems = [], []
    for path in tqdm(paths, desc="prepare targets", disable=not progress):
        try:
            prepared.append(prepare_target(path, resolution=resolution, crop=crop, align=align))
        except TargetImageError as exc:
            problems.append(str(exc))
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise TargetImageError(f"{len(problems)} of {len(paths)} target images cannot be used:\n{listed}")

    out_dir = pathlib.Path(out_dir)
    images_dir = out_dir / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    for target in prepared:
        atomic_write(
            images_dir / f"{target.image_id}.png", lambda f, t=target: Image.fromarray(t.pixels).save(f, format="PNG")
        )
    keep = {f"{t.image_id}.png" for t in prepared}
    for stale in images_dir.glob("*.png"):  # from an earlier sample
        if stale.name not in keep:
            stale.unlink()
    table = pd.DataFrame([t.row() for t in prepared], columns=list(CSV_COLUMNS))
    atomic_write(out_dir / CSV_NAME, lambda f: f.write(table.to_csv(index=False).encode("utf-8")))
    return table


def read_targets_table(out_dir: str | os.PathLike) -> pd.DataFrame:
    path = pathlib.Path(out_dir) / CSV_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run prepare_targets first (the pipeline's targets rule)")
    return pd.read_csv(
        path, dtype={"image_id": str, "source_path": str, "source_sha256": str, "mode": str}, keep_default_na=False
    )


def read_prepared_targets(out_dir: str | os.PathLike) -> tuple[list[str], torch.Tensor]:
    """Prepared targets -> (image ids in targets.csv order, images [N, 3, R, R] float32 in [-1, 1])."""
    out_dir = pathlib.Path(out_dir)
    ids = list(read_targets_table(out_dir)["image_id"])
    arrays = []
    for image_id in ids:
        path = out_dir / IMAGES_DIR / f"{image_id}.png"
        with Image.open(path) as img:
            if img.mode != "RGB" or img.width != img.height:
                raise TargetImageError(
                    f"{path}: prepared targets must be square 8-bit RGB, got mode {img.mode} {img.width}x{img.height}; "
                    f"run prepare_targets again"
                )
            arrays.append(np.asarray(img))
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise TargetImageError(
            f"{out_dir / IMAGES_DIR}: prepared targets differ in size {sorted(sizes)}; run prepare_targets again"
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    assert images.ndim == 4 and images.shape[1] == 3, images.shape
    return ids, images.contiguous()


def load_target(path: str | os.PathLike, *, resolution: int, crop: float = 1.0) -> torch.Tensor:
    """An image file -> [1, 3, resolution, resolution] in [-1, 1], checked, converted, centre-cropped and
    resized exactly as the pipeline prepares its targets (prepare_target: Lanczos, then 8-bit)."""
    return to_float(prepare_target(path, resolution=resolution, crop=crop).pixels[None])


def load_targets(paths: Sequence[str | os.PathLike], *, resolution: int, crop: float = 1.0) -> torch.Tensor:
    """Several image files -> [N, 3, resolution, resolution] in [-1, 1]."""
    return torch.cat([load_target(p, resolution=resolution, crop=crop) for p in paths])
