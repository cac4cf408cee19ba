"""Identity-similarity backends on real CelebA-HQ faces (mirror) and on images without a face."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from PIL import Image

from benchmarks.metrics.identity import (
    identity_backends,
    identity_similarity,
    make_identity_backend,
    register_identity_backend,
)
from benchmarks.metrics.identity.facenet_backend import VGGFACE2_FILE, VGGFACE2_URL

FACES = "celebahq-stargan-v2"


def celebahq_faces(mirror, *, size: int = 64) -> dict[str, np.ndarray]:
    """The first female and the first male face of the manifest (source folder = gender), at `size` px."""
    manifest = pd.read_csv(mirror / FACES / "MANIFEST.tsv", sep="\t")
    faces = {}
    for gender in ("female", "male"):
        name = manifest[manifest.source_path.str.contains(f"/{gender}/")].file.iloc[0]
        picture = Image.open(mirror / FACES / name).convert("RGB").resize((size, size), Image.LANCZOS)
        faces[gender] = np.asarray(picture)
    return faces


def no_face_images(size: int = 64) -> np.ndarray:
    coffee = np.asarray(Image.fromarray(skimage.data.coffee()).resize((size, size), Image.LANCZOS))
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.stack([coffee, noise])


def test_registry_has_both_backends_and_rejects_duplicates():
    assert {"dlib", "facenet"} <= set(identity_backends())
    with pytest.raises(ValueError, match="registered twice"):
        register_identity_backend(name="dlib", factory=dict, description="dup")
    with pytest.raises(KeyError, match="unknown identity backend"):
        make_identity_backend("arcface")
    with pytest.raises(ValueError, match="on_undetected"):
        make_identity_backend("dlib", on_undetected="drop")


def test_dlib_same_face_vs_different_people(mirror):
    faces = celebahq_faces(mirror)
    backend = make_identity_backend("dlib")
    table = identity_similarity(backend, faces["female"], np.stack([faces["female"], faces["male"]]))
    assert list(table.columns) == ["pair", "similarity", "distance", "target_detected", "edited_detected"]
    assert table.target_detected.all() and table.edited_detected.all()
    same, different = table.similarity
    assert same > 0.99 and different < same - 0.05
    assert table.distance[1] > 0.6  # dlib's own same-person threshold is a distance of 0.6
    # A float tensor in [-1, 1] (the generator's output format) gives the same embedding as uint8.
    as_tensor = torch.from_numpy(faces["male"].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    np.testing.assert_allclose(backend.embed(as_tensor)[0], backend.embed(faces["male"])[0], atol=1e-6)


def test_faces_located_once_give_the_same_embeddings_and_attributes(mirror):
    from fzplus.edits.attributes import label_attributes
    from fzplus.faces.landmarks import locate_faces

    images = np.concatenate([np.stack(list(celebahq_faces(mirror).values())), no_face_images()])
    backend = make_identity_backend("dlib")
    faces = locate_faces(images, min_size=backend.min_size)
    assert faces.detected.tolist() == [True, True, False, False]
    alone, shared = backend.embed(images), backend.embed(images, faces=faces)
    np.testing.assert_array_equal(alone[0], shared[0])
    np.testing.assert_array_equal(alone[1], shared[1])
    pd.testing.assert_frame_equal(
        label_attributes(images, progress=False), label_attributes(None, faces=faces, progress=False)
    )
    with pytest.raises(ValueError, match="min_size"):
        backend.embed(images, faces=locate_faces(images, min_size=128))


def test_dlib_undetected_faces_are_flagged_under_both_policies(mirror):
    face = celebahq_faces(mirror)["female"]
    full = identity_similarity(make_identity_backend("dlib", on_undetected="full-frame"), face, no_face_images())
    assert not full.edited_detected.any() and full.similarity.notna().all()
    assert full.attrs["edited_undetected"] == 2 and full.attrs["similarity_missing"] == 0
    skip = identity_similarity(make_identity_backend("dlib", on_undetected="skip"), face, no_face_images())
    assert not skip.edited_detected.any() and skip.similarity.isna().all()
    assert skip.attrs["edited_undetected"] == 2 and skip.attrs["similarity_missing"] == 2
    with pytest.raises(ValueError, match="2 targets for 3 edited"):
        identity_similarity(make_identity_backend("dlib"), no_face_images(), np.stack([face] * 3))


def test_facenet_without_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(FileNotFoundError, match=VGGFACE2_URL.replace(".", r"\.")):
        make_identity_backend("facenet")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        make_identity_backend("facenet", weights=tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        make_identity_backend("facenet", weights=tmp_path / "bad.pt")


def test_facenet_pipeline_with_random_weights_in_the_released_format(mirror, tmp_path, monkeypatch):
    """Real MTCNN (its weights ship in the wheel); a random InceptionResnetV1 saved like the released file
    (with the VGGFace2 classifier head), found in facenet-pytorch's cache location."""
    from facenet_pytorch import InceptionResnetV1

    import fzplus  # noqa: F401

    torch.manual_seed(0)
    network = InceptionResnetV1(pretrained=None, classify=False)
    network.logits = torch.nn.Linear(512, 8631)
    (tmp_path / "checkpoints").mkdir()
    torch.save(network.state_dict(), tmp_path / "checkpoints" / VGGFACE2_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    face, no_face = celebahq_faces(mirror)["male"], no_face_images()[:1]
    table = identity_similarity(make_identity_backend("facenet"), face, np.concatenate([face[None], no_face]))
    assert table.target_detected.all() and list(table.edited_detected) == [True, False]
    assert table.similarity[0] == pytest.approx(1.0, abs=1e-5) and np.isfinite(table.similarity[1])
    embeddings, detected = make_identity_backend("facenet", on_undetected="skip").embed(no_face)
    assert embeddings.shape == (1, 512) and np.isnan(embeddings).all() and not detected.any()
