"""Provenance checks: does provenance.json describe what made the run, and is that what this audit looks at?

    checks = check_provenance("results/ci", config=current_config, ignore_keys=NO_EFFECT)

- each asset file's sha256 recorded against the asset mirror's copy, where the mirror holds one (an asset the
  mirror lacks is reported as not checked, not as failed: a reviewer may not have the assets);
- the generator file's sha256 (results/<run>/generator.pt) against the one recorded;
- the code revision: recorded, known to the repository the audit runs from, and clean (a run made from
  uncommitted changes cannot be traced to code, so it fails);
- the config: the current one (the `audit` target's invocation) against the one recorded, key by key, except
  the keys that change no output (the workflow's NO_EFFECT), so that a config edited after the run is named.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.audit.checks import Check
from benchmarks.audit.manifest import read_provenance
from fzplus.assets import REPO_ROOT, asset_mirror, file_sha256
from fzplus.config import resolve_path

GIT_TIMEOUT_S = 30
SHOWN_CHANGES = 3
PROVENANCE = "provenance.json"


def check_provenance(
    results_dir: str | os.PathLike,
    *,
    repo: str | os.PathLike = REPO_ROOT,
    config: Mapping[str, Any] | None = None,
    ignore_keys: Sequence[str] = (),
) -> list[Check]:
    """Checks of kind "provenance". config: the current validated config, compared with the recorded one
    (None: not compared). ignore_keys: dotted keys (a section covers its keys) left out of that comparison."""
    root = pathlib.Path(results_dir)
    record = read_provenance(root)
    recorded_config = record.get("config") or {}
    return [
        *_revision_checks(record.get("git") or {}, repo=pathlib.Path(repo)),
        *_asset_checks(record.get("assets") or {}, mirror_setting=(config or recorded_config).get("asset_mirror")),
        _generator_check(record, root=root),
        *_config_checks(recorded_config, config, ignore_keys=ignore_keys),
    ]


def _revision_checks(git: Mapping[str, Any], *, repo: pathlib.Path) -> list[Check]:
    revision = git.get("revision")
    subject = f"{PROVENANCE}: git"
    if not revision:
        reason = git.get("error") or "no git record"
        return [Check("provenance", subject, "revision", "a commit of the code", f"none recorded ({reason})", False)]
    checks = [Check("provenance", subject, "revision", "a commit of the code", revision, ok=True)]
    known = _commit_known(repo, revision)
    if known is None:
        checks.append(
            Check(
                "provenance",
                subject,
                "revision in the repository",
                f"a commit of {repo}",
                f"not checked: {repo} is not a git checkout",
                ok=True,
            )
        )
    else:
        found = "present" if known else "absent: fetch that commit, or audit with the checkout that made the run"
        checks.append(Check("provenance", subject, "revision in the repository", f"a commit of {repo}", found, known))
    changes = [change.strip() for change in git.get("changes") or []]
    dirty = bool(git.get("dirty"))
    total = git.get("changes_total", len(changes))
    found = f"dirty: {total} uncommitted changes, e.g. {'; '.join(changes[:SHOWN_CHANGES])}" if dirty else "clean"
    checks.append(Check("provenance", subject, "dirty", "clean (the run's code is its commit)", found, ok=not dirty))
    return checks


def _commit_known(repo: pathlib.Path, revision: str) -> bool | None:
    """Whether `repo` holds the commit; None where `repo` is no git checkout (or git is missing)."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True, timeout=GIT_TIMEOUT_S
        )
        if inside.returncode != 0:
            return None
        found = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "-e", f"{revision}^{{commit}}"],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.returncode == 0


def _asset_checks(assets: Mapping[str, Any], *, mirror_setting: str | None) -> list[Check]:
    try:
        mirror = asset_mirror(resolve_path(mirror_setting) if mirror_setting else None)
        no_mirror = "no asset mirror configured or present (config asset_mirror, FZPLUS_ASSET_MIRROR)"
    except FileNotFoundError as exc:
        mirror, no_mirror = None, str(exc)
    checks = []
    for name, asset in assets.items():
        subject = f"{PROVENANCE}: assets.{name}"
        files = asset.get("files")
        if files is None:  # a user-provided folder: each image's sha256 is in targets/targets.csv
            found = "not checked: a user-provided folder (targets/targets.csv records each image's sha256)"
            checks.append(Check("provenance", subject, "", "the mirror's copy", found, ok=True))
            continue
        for file, recorded in files.items():
            copy = mirror / name / file if mirror is not None else None
            if copy is None or not copy.is_file():
                where = no_mirror if copy is None else f"{copy} is not present"
                checks.append(Check("provenance", subject, file, "the mirror's copy", f"not checked: {where}", True))
                continue
            actual = file_sha256(copy)
            checks.append(
                Check(
                    "provenance",
                    subject,
                    file,
                    f"sha256 {actual} ({copy})",
                    f"sha256 {recorded}",
                    ok=actual == recorded,
                )
            )
    return checks


def _generator_check(record: Mapping[str, Any], *, root: pathlib.Path) -> Check:
    recorded = ((record.get("extra") or {}).get("generator") or {}).get("sha256")
    subject, item = f"{PROVENANCE}: extra.generator", "sha256"
    path = root / "generator.pt"
    if not path.is_file():
        return Check("provenance", subject, item, f"sha256 of {path}", "generator.pt is missing", ok=False)
    actual = file_sha256(path)
    return Check(
        "provenance", subject, item, f"sha256 {actual} (generator.pt)", f"sha256 {recorded}", ok=actual == recorded
    )


def flatten(config: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf value}; lists are leaves."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _ignored(key: str, ignore_keys: Sequence[str]) -> bool:
    return any(key == ignored or key.startswith(f"{ignored}.") for ignored in ignore_keys)


def _shown(flat: Mapping[str, Any], key: str) -> str:
    return json.dumps(flat[key]) if key in flat else "absent"


def _config_checks(
    recorded: Mapping[str, Any], current: Mapping[str, Any] | None, *, ignore_keys: Sequence[str]
) -> list[Check]:
    subject = f"{PROVENANCE}: config"
    if current is None:
        found = "not compared: no current config given (`snakemake audit` compares its invocation's config)"
        return [Check("provenance", subject, "", "the current config", found, ok=True)]
    # as provenance.json stores it: plain JSON (tuples become lists)
    now = flatten(json.loads(json.dumps(current, default=str)))
    then = flatten(recorded)
    checks = []
    for key in sorted(set(now) | set(then)):
        if _ignored(key, ignore_keys):
            continue
        ok = key in now and key in then and now[key] == then[key]
        expected, found = f"{_shown(now, key)} (the current config)", f"{_shown(then, key)} (recorded)"
        checks.append(Check("provenance", subject, key, expected, found, ok=ok))
    return checks
