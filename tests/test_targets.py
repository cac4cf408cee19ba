"""Target preparation: deterministic sampling, RGB conversions that are said, bad inputs that name the file."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fzplus.images import resize_lanczos
from fzplus.targets import (
    CSV_COLUMNS,
    TargetConversionWarning,
    TargetImageError,
    centre_crop,
    list_images,
    prepare_targets,
    read_prepared_targets,
    sample_images,
)

R = 32  # generator resolution of these tests


def rgb(size=(80, 80), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def save(folder, name, image: Image.Image, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name, **kwargs)
    return folder / name


@pytest.fixture
def convertible(tmp_path):
    """Images that are usable, some after a conversion to RGB."""
    folder = tmp_path / "good"
    save(folder, "000100.png", Image.fromarray(rgb(seed=1)))
    save(folder, "gray.png", Image.fromarray(rgb(seed=2)[..., 0]))  # L
    opaque = np.concatenate([rgb(seed=3), np.full((80, 80, 1), 255, np.uint8)], axis=2)
    save(folder, "opaque.png", Image.fromarray(opaque))  # RGBA, alpha all 255
    save(folder, "palette.png", Image.fromarray(rgb(seed=4)).quantize(colors=16))  # P
    sixteen = (np.arange(80 * 80, dtype=np.uint32).reshape(80, 80) * 10).astype(np.uint16)
    save(folder, "sixteen.png", Image.fromarray(sixteen))  # 16-bit grayscale
    save(folder, "photo.JPG", Image.fromarray(rgb(seed=5)), quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_prepare_converts_notes_and_warns(convertible, tmp_path):
    out = tmp_path / "targets"
    with pytest.warns(TargetConversionWarning) as caught:
        table = prepare_targets(convertible, out, resolution=R)
    assert list(table.columns) == list(CSV_COLUMNS)
    assert list(table["image_id"]) == ["000100", "gray", "opaque", "palette", "photo", "sixteen"]
    notes = dict(zip(table["image_id"], table["conversions"]))
    assert notes["000100"] == "" and notes["photo"] == ""
    assert "grayscale (L) -> RGB" in notes["gray"]
    assert "alpha channel dropped" in notes["opaque"]
    assert "palette (P) -> RGB" in notes["palette"]
    assert "16-bit grayscale" in notes["sixteen"]
    warned = " ".join(str(w.message) for w in caught)
    for name in ("gray.png", "opaque.png", "palette.png", "sixteen.png"):
        assert name in warned
    for image_id in table["image_id"]:
        with Image.open(out / "images" / f"{image_id}.png") as img:
            assert (img.mode, img.size) == ("RGB", (R, R))
    row = table.set_index("image_id").loc["000100"]
    assert (row["width"], row["height"], row["mode"]) == (80, 80, "RGB")
    assert row["source_sha256"] == hashlib.sha256((convertible / "000100.png").read_bytes()).hexdigest()


def test_load_targets_round_trip(convertible, tmp_path):
    out = tmp_path / "targets"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TargetConversionWarning)
        table = prepare_targets(convertible, out, resolution=R)
    ids, images = read_prepared_targets(out)
    assert ids == list(table["image_id"]) and ids[0] == "000100"  # leading zeros survive the CSV
    assert images.shape == (len(ids), 3, R, R) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    gray = images[ids.index("gray")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # replicated channels


def test_resize_is_the_inversion_protocol_rounded_to_8_bit(tmp_path):
    source = rgb(size=(64, 64), seed=7)
    save(tmp_path / "src", "x.png", Image.fromarray(source))
    prepare_targets(tmp_path / "src", tmp_path / "out", resolution=R)
    _, images = read_prepared_targets(tmp_path / "out")
    reference = resize_lanczos(torch.from_numpy(source).permute(2, 0, 1)[None].float() / 127.5 - 1, R)
    expected = ((reference + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1
    assert torch.allclose(images, expected, atol=1e-6)


def test_crop_keeps_the_centred_square_before_resizing(tmp_path):
    source = rgb(size=(80, 80), seed=3)
    assert np.array_equal(centre_crop(source, crop=0.5), source[20:60, 20:60])
    assert np.array_equal(centre_crop(source, crop=1.0), source)
    save(tmp_path / "src", "x.png", Image.fromarray(source))
    prepare_targets(tmp_path / "src", tmp_path / "cropped", resolution=R, crop=0.4)  # 32 px kept: no resize
    _, images = read_prepared_targets(tmp_path / "cropped")
    assert torch.equal(images[0], torch.from_numpy(source[24:56, 24:56]).permute(2, 0, 1).float() / 127.5 - 1)
    with pytest.raises(
        TargetImageError,
        match=r"x\.png: is 80x80 \(its centre crop of 0\.3, 24 px\), smaller than the generator resolution",
    ):
        prepare_targets(tmp_path / "src", tmp_path / "too_small", resolution=R, crop=0.3)
    with pytest.raises(ValueError, match=r"crop must be in \(0, 1\]"):
        centre_crop(source, crop=1.5)


def test_constant_image_keeps_its_colour(tmp_path):
    save(tmp_path / "src", "flat.png", Image.new("RGB", (100, 100), (200, 30, 90)))
    prepare_targets(tmp_path / "src", tmp_path / "out", resolution=R)
    with Image.open(tmp_path / "out" / "images" / "flat.png") as img:
        assert np.all(np.asarray(img) == np.array([200, 30, 90], np.uint8))


@pytest.mark.parametrize(
    "name, make, fragments",
    [
        (
            "translucent.png",
            lambda: Image.fromarray(np.concatenate([rgb(), np.full((80, 80, 1), 128, np.uint8)], axis=2)),
            ["transparent pixels", "flatten"],
        ),
        ("wide.png", lambda: Image.fromarray(rgb(size=(80, 60))), ["80x60", "not square", "targets.align: ffhq"]),
        (
            "tiny.png",
            lambda: Image.fromarray(rgb(size=(16, 16))),
            ["16x16", "smaller than the generator resolution 32x32"],
        ),
    ],
)
def test_unusable_image_is_an_error_naming_the_file(tmp_path, name, make, fragments):
    folder = tmp_path / "src"
    save(folder, "fine.png", Image.fromarray(rgb()))
    bad = save(folder, name, make())
    with pytest.raises(TargetImageError) as info:
        prepare_targets(folder, tmp_path / "out", resolution=R)
    message = str(info.value)
    assert str(bad) in message and "fine.png" not in message
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_corrupt_files_are_errors_naming_the_file(tmp_path):
    folder = tmp_path / "src"
    jpeg = save(folder, "truncated.jpg", Image.fromarray(rgb()), quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 3])
    garbage = folder / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    with pytest.raises(TargetImageError) as info:
        prepare_targets(folder, tmp_path / "out", resolution=R)
    message = str(info.value)
    assert "2 of 2 target images cannot be used" in message
    assert f"{garbage}: cannot be read as an image" in message and f"{jpeg}: cannot be read as an image" in message


def test_every_bad_file_is_reported_in_one_error(tmp_path):
    folder = tmp_path / "src"
    save(folder, "a_wide.png", Image.fromarray(rgb(size=(90, 80))))
    save(folder, "b_tiny.png", Image.fromarray(rgb(size=(8, 8))))
    save(folder, "c_good.png", Image.fromarray(rgb()))
    with pytest.raises(TargetImageError, match=r"(?s)2 of 3 .*a_wide.png.*b_tiny.png"):
        prepare_targets(folder, tmp_path / "out", resolution=R)


def test_seeded_sample_is_deterministic_and_independent_of_listing(tmp_path):
    folder = tmp_path / "src"
    for i in range(20):
        save(folder, f"{i:03d}.png", Image.fromarray(rgb(size=(40, 40), seed=i)))
    paths = list_images(folder)
    assert [p.name for p in paths] == sorted(p.name for p in paths)
    first = sample_images(paths, count=5, seed=3)
    assert sample_images(list(reversed(paths)), count=5, seed=3) == first  # the order given does not matter
    assert first == sorted(first) and len(set(first)) == 5 and set(first) <= set(paths)
    chosen = np.random.default_rng(3).choice(20, size=5, replace=False)
    assert first == [paths[i] for i in sorted(chosen)]
    assert sample_images(paths, count=5, seed=4) != first
    assert sample_images(paths, count=None, seed=3) == paths

    a = prepare_targets(folder, tmp_path / "a", resolution=R, count=5, seed=3)
    b = prepare_targets(folder, tmp_path / "b", resolution=R, count=5, seed=3)
    assert a.equals(b) and list(a["image_id"]) == [p.stem for p in first]


def test_resampling_removes_stale_images(tmp_path):
    folder = tmp_path / "src"
    for i in range(6):
        save(folder, f"{i}.png", Image.fromarray(rgb(size=(40, 40), seed=i)))
    out = tmp_path / "out"
    prepare_targets(folder, out, resolution=R, count=6)
    table = prepare_targets(folder, out, resolution=R, count=2, seed=1)
    assert sorted(p.stem for p in (out / "images").glob("*.png")) == sorted(table["image_id"])
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_folder_problems(tmp_path):
    with pytest.raises(TargetImageError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetImageError, match="has no"):
        list_images(tmp_path / "empty")
    folder = tmp_path / "twins"
    save(folder, "x.png", Image.fromarray(rgb()))
    save(folder, "x.jpg", Image.fromarray(rgb()))
    with pytest.raises(TargetImageError, match="same image id 'x'"):
        list_images(folder)
    with pytest.raises(TargetImageError, match="cannot sample 3 targets from 2 images"):
        sample_images([folder / "x.png", folder / "x.jpg"], count=3)


def test_load_targets_without_preparation(tmp_path):
    with pytest.raises(FileNotFoundError, match="run prepare_targets first"):
        read_prepared_targets(tmp_path)
