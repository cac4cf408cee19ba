#!/usr/bin/env bash
# Install the suite into ./.venv (created if missing): pinned requirements, the --no-deps packages,
# then the suite itself in editable mode. Offline but for the package registries.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "installed: $(.venv/bin/python -c 'import fzplus, torch; print("fzplus", fzplus.__version__, "torch", torch.__version__)')"
