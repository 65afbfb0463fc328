#!/usr/bin/env bash
# Make sure a headless Chromium is on PATH for the runs pages' browser tests (tests/flow/test_runs_page.py).
#
#   bash scripts/browser.sh      (what `make test` runs first)
#
# Idempotent: when `chromium` (or $CHROMIUM, or `chromium-browser`) runs, it does nothing else. Otherwise, as
# root on Debian: `apt-get install chromium` (about 70 MB; Playwright drives it, and never downloads a browser
# of its own). Exits non-zero, saying why, when it cannot.
set -euo pipefail

step() { printf 'browser: %s\n' "$*"; }
fail() { printf 'browser: error: %s\n' "$*" >&2; exit 1; }

for candidate in "${CHROMIUM:-}" chromium chromium-browser; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null && "$candidate" --version >/dev/null 2>&1; then
        step "$("$candidate" --version 2>/dev/null | head -n 1): using it"
        exit 0
    fi
done

[ "$(id -u)" -eq 0 ] || fail "no Chromium, and not root to install it: apt-get install chromium (or set CHROMIUM)"
command -v apt-get >/dev/null || fail "no Chromium, and no apt-get to install it: install Chromium (or set CHROMIUM)"
step "installing chromium from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null || fail "apt-get installed no chromium"
step "$(chromium --version 2>/dev/null | head -n 1): installed"
