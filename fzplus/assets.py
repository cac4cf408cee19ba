"""Where external data files come from: the asset mirror folder.

Resolution order: the explicit argument (config key `asset_mirror`), the environment variable
FZPLUS_ASSET_MIRROR, then `../shared/assets` beside the checkout (the development machines and CI).
"""
from __future__ import annotations

import os
import pathlib

ENV_VAR = "FZPLUS_ASSET_MIRROR"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def asset_mirror(configured: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The mirror folder, or None where none is configured or present."""
    for candidate in (configured, os.environ.get(ENV_VAR), REPO_ROOT.parent / "shared" / "assets"):
        if candidate and pathlib.Path(candidate).is_dir():
            return pathlib.Path(candidate).resolve()
    if configured or os.environ.get(ENV_VAR):
        raise FileNotFoundError(f"asset mirror {configured or os.environ[ENV_VAR]!r} is not a folder; fix the config key "
                                f"'asset_mirror' or the environment variable {ENV_VAR}")
    return None
