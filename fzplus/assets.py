"""External data files (SPEC §10): where they come from, their checksums, and copies in resources/.

Every external file is declared once in config/assets.yaml (name, kind, source, sha256, licence).
`materialize_asset` puts a verified copy under resources/<name>/ and returns its path. Sources, in order:
a copy already in resources/ (kept when it verifies), the asset mirror folder <mirror>/<name>/, the
declared URL (when downloads are allowed). Files are checked against their sha256 while they are copied
and a folder is assembled in a temporary folder that is renamed into place only when complete, so a
failure leaves nothing half-written. User-provided folders (the paper's CelebA-HQ) are used in place.

Mirror resolution order: the explicit argument (config key `asset_mirror`), the environment variable
FZPLUS_ASSET_MIRROR, then `../shared/assets` beside the checkout (the development machines and CI).

    decl = load_asset_declarations("config/assets.yaml")
    path = materialize_asset("celebahq-stargan-v2", declarations=decl, resources_dir="resources")
    hashes = asset_sha256s(["celebahq-stargan-v2"], declarations=decl, resources_dir="resources")
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import posixpath
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

import yaml

ENV_VAR = "FZPLUS_ASSET_MIRROR"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
KINDS = ("file", "folder")
FIELDS = {
    "kind",
    "description",
    "source",
    "licence",
    "file",
    "sha256",
    "verify",
    "files",
    "user_provided",
    "how_to_obtain",
    "used_by",
}
REQUIRED_FIELDS = ("kind", "source", "licence")
DOWNLOAD_TIMEOUT_S = 60
CHUNK = 1 << 20


def asset_mirror(configured: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The mirror folder, or None where none is configured or present."""
    for candidate in (configured, os.environ.get(ENV_VAR), REPO_ROOT.parent / "shared" / "assets"):
        if candidate and pathlib.Path(candidate).is_dir():
            return pathlib.Path(candidate).resolve()
    if configured or os.environ.get(ENV_VAR):
        raise FileNotFoundError(
            f"asset mirror {configured or os.environ[ENV_VAR]!r} is not a folder; fix the config key "
            f"'asset_mirror' or the environment variable {ENV_VAR}"
        )
    return None


class AssetError(RuntimeError):
    """A declared asset is missing, corrupt or wrongly declared; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class AssetDeclaration:
    name: str
    kind: str  # "file" or "folder"
    files: dict[str, str | None]  # relative path -> sha256 (None: not verifiable); empty for user-provided folders
    urls: dict[str, str]  # relative path -> download URL (where one is known)
    source: dict[str, Any]
    licence: str
    verify: bool = True
    user_provided: bool = False
    description: str = ""
    how_to_obtain: str = ""


# ---- declarations -------------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a declaration file must not."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise AssetError(
                f"{node.start_mark.name}: {key!r} is declared twice (line {key_node.start_mark.line + 1}); "
                f"every asset and file is declared once"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_asset_declarations(
    path: str | os.PathLike = REPO_ROOT / "config" / "assets.yaml",
) -> dict[str, AssetDeclaration]:
    """Parse and validate the declarations file -> {name: AssetDeclaration}."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"asset declarations file {str(path)!r} does not exist (config key asset_declarations)")
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(data, dict) or not isinstance(data.get("assets"), dict):
        raise AssetError(f"{path}: expected a top-level mapping 'assets: {{<name>: <declaration>}}'")
    return {name: _parse_declaration(name, entry, path) for name, entry in data["assets"].items()}


def _parse_declaration(name: str, entry: Any, path: pathlib.Path) -> AssetDeclaration:
    def fail(message: str) -> AssetError:
        return AssetError(f"{path}: asset {name!r}: {message}")

    if not isinstance(entry, dict):
        raise fail("the declaration must be a mapping")
    unknown, missing = sorted(set(entry) - FIELDS), [k for k in REQUIRED_FIELDS if k not in entry]
    if unknown or missing:
        raise fail(f"unknown fields {unknown}, missing fields {missing}; allowed: {sorted(FIELDS)}")
    if entry["kind"] not in KINDS:
        raise fail(f"kind {entry['kind']!r} must be one of {KINDS}")
    if not isinstance(entry["source"], dict):
        raise fail("source must be a mapping: {url: ...} or {repository: ..., commit: ..., path: ...}")
    source, verify, user_provided = (
        dict(entry["source"]),
        bool(entry.get("verify", True)),
        bool(entry.get("user_provided", False)),
    )
    if entry["kind"] == "file":
        if "file" not in entry or "sha256" not in entry:
            raise fail("a file asset needs 'file' (its name) and 'sha256' (null only with verify: false)")
        files = {entry["file"]: entry["sha256"]}
        url = source.get("url") or _github_raw_url(source, source.get("path"))
        urls = {entry["file"]: url} if url else {}
    elif user_provided:
        files, urls, verify = {}, {}, False
        if not entry.get("how_to_obtain"):
            raise fail("a user-provided folder needs 'how_to_obtain'")
    else:
        if not isinstance(entry.get("files"), dict) or not entry["files"]:
            raise fail(
                "a folder asset needs 'files: {<file>: {sha256: ..., source_path: <below source.path>}}' "
                "(or user_provided: true)"
            )
        files = {f: (meta or {}).get("sha256") for f, meta in entry["files"].items()}
        # a file's place in the source repository: source.path joined with its source_path (default: its own name)
        urls = {
            f: u
            for f, meta in entry["files"].items()
            if (
                u := _github_raw_url(source, posixpath.join(source.get("path", ""), (meta or {}).get("source_path", f)))
            )
        }
    for file, sha in files.items():
        if sha is None and verify:
            raise fail(
                f"{file}: sha256 is null; declare the checksum, or set 'verify: false' with a comment saying why"
            )
        if sha is not None and not (
            isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
        ):
            raise fail(f"{file}: sha256 must be 64 lowercase hex digits, got {sha!r}")
        if pathlib.PurePosixPath(file).is_absolute() or ".." in pathlib.PurePosixPath(file).parts:
            raise fail(f"file name {file!r} must be a relative path inside the asset folder")
    return AssetDeclaration(
        name=name,
        kind=entry["kind"],
        files=files,
        urls=urls,
        source=source,
        licence=str(entry["licence"]),
        verify=verify,
        user_provided=user_provided,
        description=str(entry.get("description", "")),
        how_to_obtain=str(entry.get("how_to_obtain", "")),
    )


def _github_raw_url(source: Mapping[str, Any], repo_path: str | None) -> str | None:
    if repo_path and source.get("repository") and source.get("commit"):
        return f"https://raw.githubusercontent.com/{source['repository']}/{source['commit']}/{repo_path}"
    return None


def _declaration(name: str, declarations: Mapping[str, AssetDeclaration]) -> AssetDeclaration:
    if name not in declarations:
        raise AssetError(
            f"asset {name!r} is not declared; declared assets: {', '.join(sorted(declarations))} (config/assets.yaml)"
        )
    return declarations[name]


# ---- hashing and copying ------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_hashing(reader: BinaryIO, writer: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := reader.read(CHUNK):
        digest.update(chunk)
        writer.write(chunk)
    return digest.hexdigest()


def _mismatch(decl: AssetDeclaration, file: str, origin: str, expected: str, actual: str) -> str:
    return (
        f"asset {decl.name!r}: checksum mismatch for {origin}: sha256 {actual}, "
        f"expected {expected} (config/assets.yaml). "
        f"The file is corrupt or a different version; replace it with {file!r} from {_describe_source(decl, file)}"
    )


def _describe_source(decl: AssetDeclaration, file: str) -> str:
    return decl.urls.get(file) or decl.source.get("url") or ", ".join(f"{k} {v}" for k, v in decl.source.items())


def _fetch_into(
    staging: pathlib.Path,
    decl: AssetDeclaration,
    file: str,
    *,
    existing: pathlib.Path,
    mirror: pathlib.Path | None,
    download: bool,
) -> tuple[bool, list[str], list[str]]:
    """Write a verified copy of `file` under `staging` from the first source that has a good one.
    Returns (done, checksum mismatches seen, download failures seen)."""
    expected = decl.files[file]
    dest = staging / file
    dest.parent.mkdir(parents=True, exist_ok=True)
    mismatches, failures = [], []
    for candidate in [existing / file] + ([mirror / decl.name / file] if mirror is not None else []):
        if not candidate.is_file():
            continue
        with open(candidate, "rb") as reader, open(dest, "wb") as writer:
            actual = _copy_hashing(reader, writer)
        if expected is None or actual == expected:
            return True, mismatches, failures
        mismatches.append(_mismatch(decl, file, str(candidate), expected, actual))
    url = decl.urls.get(file)
    if download and url:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as reader, open(dest, "wb") as writer:  # noqa: S310 (declared https URL)
                actual = _copy_hashing(reader, writer)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"download from {url} failed ({exc})")
        else:
            if expected is None or actual == expected:
                return True, mismatches, failures
            mismatches.append(_mismatch(decl, file, url, expected, actual))
    dest.unlink(missing_ok=True)
    return False, mismatches, failures


def _missing_message(
    decl: AssetDeclaration,
    files: list[str],
    *,
    resources_root: pathlib.Path,
    mirror: pathlib.Path | None,
    failures: list[str],
) -> str:
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    mirror_place = (
        f"{mirror / decl.name}/" if mirror is not None else f"<mirror>/{decl.name}/ (no mirror is configured now)"
    )
    lines = [
        f"asset {decl.name!r} is missing: expected file(s) {shown}.",
        "Provide it in one of two ways:",
        f"  1. put the file(s) in the asset mirror at {mirror_place} "
        "(the mirror folder is the config key asset_mirror, "
        f"or the environment variable {ENV_VAR}, or ../shared/assets beside the checkout);",
        f"  2. or place them at {resources_root}/ yourself.",
        f"Source: {_describe_source(decl, files[0]) if files else decl.source}.",
    ]
    if decl.how_to_obtain:
        lines.append(f"How to obtain: {decl.how_to_obtain.strip()}")
    lines += [f"({f})" for f in failures[:3]]
    return "\n".join(lines)


def _user_folder(decl: AssetDeclaration, resources_root: pathlib.Path, mirror: pathlib.Path | None) -> pathlib.Path:
    candidates = ([mirror / decl.name] if mirror is not None else []) + [resources_root]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.iterdir()):
            return candidate.resolve()
    raise AssetError(
        f"asset {decl.name!r} (user-provided folder) was not found at {' or '.join(map(str, candidates))}.\n"
        f"Provide it in one of two ways: put (or symlink) the folder at {candidates[0]} (the asset mirror: config key "
        f"asset_mirror or the environment variable {ENV_VAR}), or at {resources_root}.\n"
        f"How to obtain: {decl.how_to_obtain.strip()}"
    )


def materialize_asset(
    name: str,
    *,
    declarations: Mapping[str, AssetDeclaration],
    resources_dir: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    download: bool = True,
) -> pathlib.Path:
    """A verified local copy of a declared asset: resources/<name>/<file> for a file asset, the folder
    resources/<name> for a folder asset (a user-provided folder is returned where it is)."""
    decl = _declaration(name, declarations)
    resources_root = pathlib.Path(resources_dir) / name
    mirror_path = asset_mirror(mirror)
    if decl.user_provided:
        return _user_folder(decl, resources_root, mirror_path)
    result = resources_root / next(iter(decl.files)) if decl.kind == "file" else resources_root
    if resources_root.is_dir() and all(_is_good(resources_root, f, sha) for f, sha in decl.files.items()):
        return result
    resources_root.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=resources_root.parent, prefix=f".{name}.", suffix=".tmp"))
    try:
        mismatches, failures, missing = [], [], []
        for file in decl.files:
            done, file_mismatches, file_failures = _fetch_into(
                staging, decl, file, existing=resources_root, mirror=mirror_path, download=download
            )
            if not done:  # a bad copy that another source replaced is no error
                missing.append(file)
                mismatches += file_mismatches
                failures += file_failures
        if mismatches:
            raise AssetError(
                "\n".join(mismatches[:5]) + (f"\n... and {len(mismatches) - 5} more" if len(mismatches) > 5 else "")
            )
        if missing:
            raise AssetError(
                _missing_message(decl, missing, resources_root=resources_root, mirror=mirror_path, failures=failures)
            )
        _swap_in(staging, resources_root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def asset_problem(
    name: str,
    *,
    declarations: Mapping[str, AssetDeclaration],
    resources_dir: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    download: bool = True,
) -> str | None:
    """Why `materialize_asset` would fail for lack of files, or None. Cheap (existence only, no hashing):
    the pipeline calls it while planning, so that a dry run stops early with the how-to-provide message.
    An asset with a download URL counts as obtainable when downloads are allowed."""
    decl = _declaration(name, declarations)
    resources_root = pathlib.Path(resources_dir) / name
    mirror_path = asset_mirror(mirror)
    if decl.user_provided:
        try:
            _user_folder(decl, resources_root, mirror_path)
            return None
        except AssetError as e:
            return str(e)
    places = [resources_root] + ([mirror_path / name] if mirror_path is not None else [])
    missing = [
        f
        for f in decl.files
        if not any((place / f).is_file() for place in places)
        and not (download and (decl.urls.get(f) or decl.source.get("url")))
    ]
    return (
        _missing_message(decl, missing, resources_root=resources_root, mirror=mirror_path, failures=[])
        if missing
        else None
    )


def _is_good(root: pathlib.Path, file: str, expected: str | None) -> bool:
    path = root / file
    return path.is_file() and (expected is None or file_sha256(path) == expected)


def _swap_in(staging: pathlib.Path, root: pathlib.Path) -> None:
    """Rename the complete staging folder to `root`; an old `root` is moved aside first and then removed."""
    for path in staging.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o644)
    os.chmod(staging, 0o755)
    if root.exists():
        old = pathlib.Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old.", suffix=".tmp"))
        os.replace(root, old / root.name)
        os.replace(staging, root)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, root)


# ---- provenance ---------------------------------------------------------------------------------------
def asset_sha256s(
    names: Iterable[str],
    *,
    declarations: Mapping[str, AssetDeclaration],
    resources_dir: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, dict[str, Any]]:
    """{name: {path, verified, files: {file: sha256 of the local copy}}} for provenance. The hashes are
    computed from the files used, also for assets declared without a checksum. A user-provided folder
    gets files=None: the sha256 of every image taken from it is in targets/targets.csv."""
    out = {}
    for name in dict.fromkeys(names):
        decl = _declaration(name, declarations)
        path = materialize_asset(
            name, declarations=declarations, resources_dir=resources_dir, mirror=mirror, download=download
        )
        root = path.parent if decl.kind == "file" else path
        files = None if decl.user_provided else {f: file_sha256(root / f) for f in decl.files}
        out[name] = dict(path=str(path), verified=decl.verify, files=files, licence=decl.licence, source=decl.source)
    return out
