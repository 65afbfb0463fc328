#!/usr/bin/env bash
# The offline infra check tools, in a venv of their own: .local/infra-venv (checkov pins many dependencies,
# so it stays out of the project's .venv).
#
#   bash scripts/infra-venv.sh        (what `make infra-check` and tests/infra run; prints the venv's python)
#
# Idempotent and fast once done: pip runs only when the pins below changed (a hash in the venv).
# PYTHON=... picks another interpreter (3.11+).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV=.local/infra-venv
# The pins: tree-sitter and its Bicep grammar for the parse check, checkov for its Bicep checks.
PINS="tree-sitter==0.26.1 tree-sitter-bicep==1.1.0 checkov==3.3.30"
STAMP="$VENV/.pins"

fail() { printf 'infra-venv: error: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null || fail "$PYTHON not found: install Python 3.11+ or set PYTHON"
    mkdir -p .local
    "$PYTHON" -m venv "$VENV" >&2 || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$PINS" ]; then
    printf 'infra-venv: installing %s into %s\n' "$PINS" "$VENV" >&2
    # shellcheck disable=SC2086
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PINS >"$VENV/.pip.log" 2>&1; then
        tail -n 5 "$VENV/.pip.log" >&2
        fail "pip install failed (no package index reachable?; log: $VENV/.pip.log)"
    fi
    printf '%s\n' "$PINS" >"$STAMP"
fi
printf '%s\n' "$VENV/bin/python"
