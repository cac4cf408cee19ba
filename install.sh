#!/usr/bin/env bash
# Install the suite into ./.venv (created if missing): pinned requirements, the --no-deps packages,
# then the suite itself in editable mode. Offline but for the package registries.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
DLIB_VERSION=20.0.1

# dlib (the mini profile's face embedder), built from source against OpenBLAS: the prebuilt dlib-bin wheel
# has no BLAS and takes 100 ms per face descriptor, the BLAS build 16 ms (one thread; measured on this
# 2-core machine), which is most of the editing stage's time. The build takes ~13 min once; pip caches the
# wheel. Without cmake, a compiler or OpenBLAS (and no root to apt-get them), or with FZPLUS_DLIB_BIN=1,
# the prebuilt wheel is installed instead: the same results, slower.
install_dlib() {
    if [[ "${FZPLUS_DLIB_BIN:-0}" != 1 ]] && ! ldconfig -p | grep -q 'libopenblas.so ' && [[ $(id -u) == 0 ]] \
            && command -v apt-get > /dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ libopenblas-dev liblapack-dev > /dev/null
    fi
    if [[ "${FZPLUS_DLIB_BIN:-0}" != 1 ]] && ldconfig -p | grep -q 'libopenblas.so ' && command -v cmake > /dev/null \
            && command -v g++ > /dev/null; then
        echo "building dlib $DLIB_VERSION against OpenBLAS (about 13 min the first time; cached afterwards)"
        .venv/bin/python -m pip install -q --no-deps --no-binary dlib "dlib==$DLIB_VERSION"
    else
        echo "installing the prebuilt dlib-bin (no BLAS: face descriptors ~6x slower); see install.sh" >&2
        .venv/bin/python -m pip install -q --no-deps "dlib-bin==$DLIB_VERSION.post1"
    fi
}

[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
install_dlib
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "installed: $(.venv/bin/python -c 'import fzplus, torch; print("fzplus", fzplus.__version__, "torch", torch.__version__)')"
