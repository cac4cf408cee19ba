"""The run's manifest, results/<run>/MANIFEST: what the folder held when the run finished, so that an audit can
name every file edited, removed or added afterwards.

    write_manifest("results/ci")           # the pipeline's last rule (workflow/rules/audit.smk: manifest)
    checks = check_manifest("results/ci")  # one Check per listed or unexpected file

The file is plain text, readable without the suite: `#` lines carry the run's config sha256 (canonical JSON of
provenance.json's "config") and code revision, then one tab-separated line per file: sha256, size in bytes and
the path relative to the results folder, sorted by path. It lists every file under the folder except itself,
the audit's own reports (written after it, or by a later audit) and Snakemake's bookkeeping.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from benchmarks.audit.checks import Check
from fzplus.assets import file_sha256
from fzplus.io import atomic_write_text

MANIFEST_NAME = "MANIFEST"
AUDIT_REPORTS = ("audit.md", "audit.json")
# not the run's outputs: the manifest itself, the audit's reports, and the file Snakemake leaves in each
# directory() output to date it
UNLISTED_NAMES = (MANIFEST_NAME, *AUDIT_REPORTS)
SNAKEMAKE_BOOKKEEPING = ".snakemake_timestamp"
FORMAT_VERSION = 1
COLUMNS = ("sha256", "size", "path")


class ManifestError(ValueError):
    """The manifest or what it describes cannot be read; the message names the file and how to fix it."""


def canonical_config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys, no spaces), so that two equal configs hash equal
    whatever their key order."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_provenance(results_dir: str | os.PathLike) -> dict[str, Any]:
    path = pathlib.Path(results_dir) / "provenance.json"
    if not path.is_file():
        raise ManifestError(f"{path} does not exist: run the pipeline's provenance rule (`snakemake --cores 2`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}): rerun the pipeline's provenance rule") from exc


def listed_files(results_dir: str | os.PathLike) -> list[str]:
    """Every file the manifest covers: paths relative to the folder, '/'-separated, sorted."""
    root = pathlib.Path(results_dir)
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in UNLISTED_NAMES and path.name != SNAKEMAKE_BOOKKEEPING:
            if "\t" in relative or "\n" in relative:
                raise ManifestError(f"{path}: a tab or newline in a file name cannot be listed; rename the file")
            found.append(relative)
    return sorted(found)


def write_manifest(results_dir: str | os.PathLike) -> pathlib.Path:
    """Write results_dir/MANIFEST (atomically) and return its path."""
    root = pathlib.Path(results_dir)
    provenance = read_provenance(root)
    if "config" not in provenance:
        raise ManifestError(f"{root / 'provenance.json'} records no config: rerun the pipeline's provenance rule")
    git = provenance.get("git", {})
    files = [
        (file_sha256(root / relative), (root / relative).stat().st_size, relative) for relative in listed_files(root)
    ]
    header = [
        f"# fzplus run manifest, format {FORMAT_VERSION} (benchmarks/audit/manifest.py)",
        "# verify: python -m benchmarks.audit <this folder>",
        f"# written_utc: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"# config_sha256: {canonical_config_sha256(provenance['config'])}",
        f"# code_revision: {git.get('revision')}",
        f"# code_dirty: {json.dumps(git.get('dirty'))}",
        f"# files: {len(files)}",
        f"# bytes: {sum(size for _, size, _ in files)}",
        "# " + "\t".join(COLUMNS),
    ]
    lines = [f"{sha}\t{size}\t{relative}" for sha, size, relative in files]
    path = root / MANIFEST_NAME
    atomic_write_text(path, "\n".join(header + lines) + "\n")
    return path


def read_manifest(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """MANIFEST -> ({header key: value}, {path: (sha256, size)})."""
    path = pathlib.Path(path)
    header, files = {}, {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("#"):
            key, colon, value = line[1:].partition(":")
            if colon:
                header[key.strip()] = value.strip()
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS) or not fields[1].isdigit():
            raise ManifestError(
                f"{path}:{number}: expected '<sha256>\\t<size>\\t<path>', got {line[:80]!r}; "
                f"the manifest was edited: rerun the pipeline (its manifest rule) to rewrite it"
            )
        files[fields[2]] = (fields[0], int(fields[1]))
    return header, files


def _short(sha: str, size: int) -> str:
    return f"sha256 {sha[:16]}... ({size} bytes)"


def check_manifest(results_dir: str | os.PathLike) -> list[Check]:
    """One Check of kind "file" per listed file (equal, edited or missing) and per unexpected file, plus the
    manifest's config sha256 against provenance.json's config (which names an edit of the config record)."""
    root = pathlib.Path(results_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        return [
            Check(
                kind="file",
                subject=MANIFEST_NAME,
                item="",
                expected=f"{path}, written by the run's last rule (manifest)",
                found="missing: rerun `snakemake --cores 2` with the run's profile to write it",
                ok=False,
            )
        ]
    header, files = read_manifest(path)
    checks = []
    for relative, (sha, size) in files.items():
        file = root / relative
        if not file.is_file():
            checks.append(Check("file", relative, "", _short(sha, size), "missing: listed but absent", ok=False))
            continue
        found_sha, found_size = file_sha256(file), file.stat().st_size
        ok = found_sha == sha and found_size == size
        found = _short(found_sha, found_size) if ok else f"edited: {_short(found_sha, found_size)}"
        checks.append(Check("file", relative, "", _short(sha, size), found, ok=ok))
    for relative in sorted(set(listed_files(root)) - set(files)):
        size = (root / relative).stat().st_size
        found = f"unexpected: present ({size} bytes) but not listed"
        checks.append(Check("file", relative, "", "not in the manifest", found, ok=False))
    recorded = header.get("config_sha256")
    if (root / "provenance.json").is_file():
        current = canonical_config_sha256(read_provenance(root).get("config"))
        checks.append(
            Check("file", MANIFEST_NAME, "config_sha256", f"{recorded} (the manifest)", current, ok=current == recorded)
        )
    return checks
