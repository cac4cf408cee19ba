"""Asset declarations, verified copies from the mirror, clear errors, nothing half-written."""

from __future__ import annotations

import csv
import hashlib
import os

import pytest
import yaml

from fzplus.assets import (
    ENV_VAR,
    AssetError,
    asset_sha256s,
    file_sha256,
    load_asset_declarations,
    materialize_asset,
)
from fzplus.config import CONFIG_DIR

FOLDER = "toy-folder"
FILE = "toy-file"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def toy(tmp_path):
    """A mirror with a folder asset (two files, one in a subfolder) and a file asset, and their declarations."""
    contents = {"a.bin": b"alpha" * 100, "sub/b.bin": b"beta" * 50}
    weights = b"weights" * 1000
    mirror = tmp_path / "mirror"
    for name, data in contents.items():
        (mirror / FOLDER / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / FOLDER / name).write_bytes(data)
    (mirror / FILE).mkdir()
    (mirror / FILE / "weights.pt").write_bytes(weights)
    declarations = {
        "assets": {
            FOLDER: dict(
                kind="folder",
                source=dict(repository="someone/repo", commit="0" * 40, path="data"),
                licence="MIT",
                files={name: dict(sha256=sha(data)) for name, data in contents.items()},
            ),
            FILE: dict(
                kind="file",
                file="weights.pt",
                sha256=sha(weights),
                source=dict(url="https://example.org/weights.pt"),
                licence="MIT",
            ),
        }
    }
    path = tmp_path / "assets.yaml"
    path.write_text(yaml.safe_dump(declarations))
    return dict(
        mirror=mirror,
        declarations_path=path,
        declarations=load_asset_declarations(path),
        contents=contents,
        weights=weights,
        resources=tmp_path / "resources",
        raw=declarations,
        tmp=tmp_path,
    )


def leftovers(resources):
    """Temporary files or folders materialize_asset left behind."""
    return [p.name for p in resources.iterdir() if p.name.startswith(".")] if resources.exists() else []


def test_folder_copy_is_verified_and_complete(toy):
    path = materialize_asset(
        FOLDER, declarations=toy["declarations"], resources_dir=toy["resources"], mirror=toy["mirror"], download=False
    )
    assert path == toy["resources"] / FOLDER
    for name, data in toy["contents"].items():
        assert (path / name).read_bytes() == data
    assert leftovers(toy["resources"]) == []


def test_file_asset_path_and_second_call_is_a_no_op(toy):
    kwargs = dict(
        declarations=toy["declarations"], resources_dir=toy["resources"], mirror=toy["mirror"], download=False
    )
    path = materialize_asset(FILE, **kwargs)
    assert path == toy["resources"] / FILE / "weights.pt" and path.read_bytes() == toy["weights"]
    stamp = path.stat().st_mtime_ns
    (toy["mirror"] / FILE / "weights.pt").unlink()  # a verified copy in resources/ needs no mirror
    assert materialize_asset(FILE, **kwargs) == path and path.stat().st_mtime_ns == stamp


def test_corrupted_mirror_file_gives_mismatch_error_and_writes_nothing(toy):
    bad = toy["mirror"] / FOLDER / "sub" / "b.bin"
    bad.write_bytes(b"tampered")
    with pytest.raises(AssetError) as info:
        materialize_asset(
            FOLDER,
            declarations=toy["declarations"],
            resources_dir=toy["resources"],
            mirror=toy["mirror"],
            download=False,
        )
    message = str(info.value)
    assert str(bad) in message and "checksum mismatch" in message
    assert sha(toy["contents"]["sub/b.bin"]) in message and sha(b"tampered") in message  # expected and actual
    assert not (
        toy["resources"] / FOLDER
    ).exists()  # not even the good file a.bin: the folder appears whole or not at all
    assert leftovers(toy["resources"]) == []


def test_corrupted_copy_in_resources_is_replaced_from_the_mirror(toy):
    kwargs = dict(
        declarations=toy["declarations"], resources_dir=toy["resources"], mirror=toy["mirror"], download=False
    )
    path = materialize_asset(FOLDER, **kwargs)
    (path / "a.bin").write_bytes(b"bit rot")
    materialize_asset(FOLDER, **kwargs)
    assert (path / "a.bin").read_bytes() == toy["contents"]["a.bin"]
    assert leftovers(toy["resources"]) == []


def test_failed_refresh_leaves_the_previous_copy_untouched(toy):
    kwargs = dict(
        declarations=toy["declarations"], resources_dir=toy["resources"], mirror=toy["mirror"], download=False
    )
    path = materialize_asset(FOLDER, **kwargs)
    (path / "a.bin").write_bytes(b"bit rot")
    (toy["mirror"] / FOLDER / "a.bin").write_bytes(b"also rotten")
    with pytest.raises(AssetError, match="checksum mismatch"):
        materialize_asset(FOLDER, **kwargs)
    assert (path / "a.bin").read_bytes() == b"bit rot" and (path / "sub" / "b.bin").read_bytes() == toy["contents"][
        "sub/b.bin"
    ]
    assert leftovers(toy["resources"]) == []


def test_missing_asset_says_how_to_provide_it(toy):
    empty_mirror = toy["tmp"] / "empty-mirror"
    empty_mirror.mkdir()
    with pytest.raises(AssetError) as info:
        materialize_asset(
            FILE, declarations=toy["declarations"], resources_dir=toy["resources"], mirror=empty_mirror, download=False
        )
    message = str(info.value)
    assert f"asset {FILE!r} is missing" in message and "weights.pt" in message
    assert str(empty_mirror / FILE) in message and ENV_VAR in message  # way 1: the mirror
    assert str(toy["resources"] / FILE) in message  # way 2: resources/
    assert "https://example.org/weights.pt" in message
    assert not (toy["resources"] / FILE).exists() and leftovers(toy["resources"]) == []


def test_download_verifies_and_a_failed_download_is_reported(toy):
    served = toy["tmp"] / "served.pt"
    served.write_bytes(toy["weights"])
    raw = toy["raw"]
    raw["assets"][FILE]["source"]["url"] = served.as_uri()  # file:// goes through the same urllib path, offline
    toy["declarations_path"].write_text(yaml.safe_dump(raw))
    declarations = load_asset_declarations(toy["declarations_path"])
    empty_mirror = toy["tmp"] / "empty-mirror"
    empty_mirror.mkdir()
    path = materialize_asset(FILE, declarations=declarations, resources_dir=toy["resources"], mirror=empty_mirror)
    assert path.read_bytes() == toy["weights"]

    served.unlink()
    (path).unlink()
    with pytest.raises(AssetError, match=r"(?s)is missing.*download from file://.*failed"):
        materialize_asset(FILE, declarations=declarations, resources_dir=toy["resources"], mirror=empty_mirror)


def test_unverified_asset_is_accepted_and_its_hash_recorded(toy):
    raw = toy["raw"]
    raw["assets"][FILE].update(sha256=None, verify=False)
    toy["declarations_path"].write_text(yaml.safe_dump(raw))
    declarations = load_asset_declarations(toy["declarations_path"])
    hashes = asset_sha256s(
        [FILE, FOLDER], declarations=declarations, resources_dir=toy["resources"], mirror=toy["mirror"], download=False
    )
    assert hashes[FILE]["files"] == {"weights.pt": sha(toy["weights"])} and hashes[FILE]["verified"] is False
    assert hashes[FOLDER]["files"] == {name: sha(data) for name, data in toy["contents"].items()}
    assert hashes[FOLDER]["verified"] is True


def test_user_provided_folder_is_used_in_place(toy):
    raw = toy["raw"]
    raw["assets"]["my-faces"] = dict(
        kind="folder",
        user_provided=True,
        source=dict(dataset="CelebA-HQ"),
        licence="research",
        how_to_obtain="Download CelebA-HQ yourself.",
    )
    toy["declarations_path"].write_text(yaml.safe_dump(raw))
    declarations = load_asset_declarations(toy["declarations_path"])
    kwargs = dict(declarations=declarations, resources_dir=toy["resources"], mirror=toy["mirror"], download=False)
    with pytest.raises(
        AssetError, match=r"(?s)'my-faces' \(user-provided folder\) was not found.*Download CelebA-HQ yourself"
    ):
        materialize_asset("my-faces", **kwargs)
    (toy["mirror"] / "my-faces").mkdir()
    (toy["mirror"] / "my-faces" / "1.png").write_bytes(b"x")
    assert materialize_asset("my-faces", **kwargs) == (toy["mirror"] / "my-faces").resolve()
    assert asset_sha256s(["my-faces"], **kwargs)["my-faces"]["files"] is None


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda a: a[FILE].update(sha256=None), "sha256 is null; declare the checksum, or set 'verify: false'"),
        (lambda a: a[FILE].update(sha256="abc"), "sha256 must be 64 lowercase hex digits"),
        (lambda a: a[FILE].update(checksum="x"), "unknown fields \\['checksum'\\]"),
        (lambda a: a[FILE].pop("licence"), "missing fields \\['licence'\\]"),
        (lambda a: a[FILE].update(kind="blob"), "kind 'blob' must be one of"),
        (
            lambda a: a[FOLDER].update(files={"../escape.bin": {"sha256": "0" * 64}}),
            "must be a relative path inside the asset folder",
        ),
    ],
)
def test_bad_declarations_are_refused(toy, change, expected):
    change(toy["raw"]["assets"])
    toy["declarations_path"].write_text(yaml.safe_dump(toy["raw"]))
    with pytest.raises(AssetError, match=expected):
        load_asset_declarations(toy["declarations_path"])


def test_duplicate_declaration_is_refused(tmp_path):
    path = tmp_path / "assets.yaml"
    entry = "    kind: file\n    file: x\n    sha256: null\n    verify: false\n    source: {url: u}\n    licence: MIT\n"
    path.write_text(f"assets:\n  twice:\n{entry}  twice:\n{entry}")
    with pytest.raises(AssetError, match="'twice' is declared twice"):
        load_asset_declarations(path)


def test_unknown_asset_lists_the_declared_ones(toy):
    with pytest.raises(AssetError, match=f"asset 'nope' is not declared; declared assets: {FILE}, {FOLDER}"):
        materialize_asset(
            "nope", declarations=toy["declarations"], resources_dir=toy["resources"], mirror=toy["mirror"]
        )


# ---- the real declarations against the real mirror -----------------------------------------------------
def test_project_declarations_match_the_mirror_manifests(mirror):
    declarations = load_asset_declarations(CONFIG_DIR / "assets.yaml")
    for name in ("celebahq-stargan-v2", "interfacegan-stylegan2-ffhq-z"):
        with open(mirror / name / "MANIFEST.tsv", newline="") as f:
            manifest = {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}
        decl = declarations[name]
        assert decl.files == {f: row["sha256"] for f, row in manifest.items()}
        root = f"https://raw.githubusercontent.com/{decl.source['repository']}/{decl.source['commit']}/"
        assert decl.urls == {f: root + row["source_path"] for f, row in manifest.items()}
    assert len(declarations["celebahq-stargan-v2"].files) == 56
    assert (
        declarations["lpips-vgg16"].files["vgg16-397923af.pth"].startswith("397923af")
    )  # torchvision's name carries the prefix


def test_project_folder_assets_materialize_from_the_mirror(mirror, tmp_path):
    declarations = load_asset_declarations(CONFIG_DIR / "assets.yaml")
    path = materialize_asset(
        "celebahq-stargan-v2", declarations=declarations, resources_dir=tmp_path, mirror=mirror, download=False
    )
    files = sorted(p.name for p in path.iterdir())
    assert len(files) == 56 and "MANIFEST.tsv" not in files
    assert all(file_sha256(path / f) == declarations["celebahq-stargan-v2"].files[f] for f in files)


def test_environment_variable_selects_the_mirror(toy, monkeypatch):
    monkeypatch.setenv(ENV_VAR, os.fspath(toy["mirror"]))
    path = materialize_asset(FOLDER, declarations=toy["declarations"], resources_dir=toy["resources"], download=False)
    assert (path / "a.bin").read_bytes() == toy["contents"]["a.bin"]
