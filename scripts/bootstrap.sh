#!/usr/bin/env bash
# Set up this checkout for development: .venv from requirements-dev.txt, and Azurite under .local.
#
#   bash scripts/bootstrap.sh        (what `make setup` runs; every make target that needs it too)
#
# Idempotent and fast once done: pip runs only when requirements*.txt changed since the last
# install (a hash in .venv/.requirements.sha256), npm only when the pinned Azurite is missing.
# Needs python3 (3.11+) with venv, and Node 20 with npm. PYTHON=... picks another interpreter.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
REQUIREMENTS_STAMP="$VENV/.requirements.sha256"
AZURITE_DIR=.local/azurite
AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite"
# One pin for Python and this script: local_runner/azurite.py's AZURITE_VERSION.
AZURITE_VERSION="$(sed -n 's/^AZURITE_VERSION = "\(.*\)"$/\1/p' local_runner/azurite.py)"

step() { printf 'bootstrap: %s\n' "$*"; }
fail() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

sha256() {
    if command -v sha256sum >/dev/null; then cat "$@" | sha256sum; else cat "$@" | shasum -a 256; fi
}

[ -n "$AZURITE_VERSION" ] || fail "could not read AZURITE_VERSION from local_runner/azurite.py"

# 1. The virtual environment.
if [ -x "$VENV/bin/python" ]; then
    step "$VENV exists"
else
    command -v "$PYTHON" >/dev/null || fail "$PYTHON not found: install Python 3.11+ or set PYTHON"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || fail "$PYTHON is $("$PYTHON" --version 2>&1); this project needs 3.11 or newer (set PYTHON)"
    step "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV" \
        || fail "python3 -m venv failed (on Debian: apt-get install python3-venv), then rerun"
fi

# 2. Python packages, when the requirements changed since the last install.
requirements_hash="$(sha256 requirements-dev.txt requirements.txt | cut -d' ' -f1)"
if [ -f "$REQUIREMENTS_STAMP" ] && [ "$(cat "$REQUIREMENTS_STAMP")" = "$requirements_hash" ]; then
    step "python packages up to date"
else
    step "installing requirements-dev.txt into $VENV"
    # pip before 24 gives up on the OpenTelemetry packages' pins (InconsistentCandidate): a newer one first.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pip>=24" \
        || fail "pip install --upgrade pip failed"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
        || fail "pip install failed; if $VENV is broken, remove it and rerun"
    printf '%s\n' "$requirements_hash" >"$REQUIREMENTS_STAMP"
fi

# 3. Azurite, pinned: 3.35.0 is the newest release that runs on Node 20.
installed_version() {
    sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$AZURITE_DIR/node_modules/azurite/package.json" \
        2>/dev/null | head -n 1
}
if [ -x "$AZURITE_BIN" ] && [ "$(installed_version)" = "$AZURITE_VERSION" ]; then
    step "azurite $AZURITE_VERSION present"
else
    command -v npm >/dev/null || fail "npm not found: install Node 20 and npm, or set AZURITE_BIN"
    step "installing azurite@$AZURITE_VERSION into $AZURITE_DIR"
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" "azurite@$AZURITE_VERSION" \
        --no-audit --no-fund --loglevel=error >/dev/null
    [ -x "$AZURITE_BIN" ] || fail "npm finished but $AZURITE_BIN is missing"
fi

# 4. The Python worker's own indexing code, for the test that indexes the app as `func start` does.
#    azure-functions-runtime declares Python >= 3.13 but is pure Python: unpack its wheel, never install.
WORKER_VERSION=1.3.0
WORKER_DIR=.local/worker
if [ -f "$WORKER_DIR/azure_functions_runtime-$WORKER_VERSION.stamp" ]; then
    step "worker indexing code $WORKER_VERSION present"
else
    step "unpacking azure-functions-runtime $WORKER_VERSION into $WORKER_DIR"
    rm -rf "$WORKER_DIR" && mkdir -p "$WORKER_DIR/wheel"
    "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.13 -d "$WORKER_DIR/wheel" "azure-functions-runtime==$WORKER_VERSION" \
        || fail "pip download azure-functions-runtime==$WORKER_VERSION failed"
    "$VENV/bin/python" -m zipfile -e "$WORKER_DIR"/wheel/*.whl "$WORKER_DIR"
    touch "$WORKER_DIR/azure_functions_runtime-$WORKER_VERSION.stamp"
fi

step "done"
