#!/usr/bin/env bash
# Make sure a Docker engine answers: reuse one that does, else install and start one.
#
#   bash scripts/docker-engine.sh      (what `make images`, `make demo`, `make up` and `make test` run first)
#
# Idempotent: when the engine answers (any engine, DOCKER_HOST honoured) it does nothing else, and it
# never stops or restarts an engine. Otherwise, as root on Debian: `apt-get install docker.io` when the
# engine is missing, then start dockerd (systemctl where systemd runs, else a detached dockerd logging to
# /var/log/dockerd.log) and wait until it answers. Exits non-zero, saying why, when it cannot.
set -euo pipefail

# dockerd answers within 2-5 s here; 60 s covers a slow first start (it creates /var/lib/docker).
START_TIMEOUT_SECONDS=60
DOCKERD_LOG=/var/log/dockerd.log

step() { printf 'docker-engine: %s\n' "$*"; }
fail() { printf 'docker-engine: error: %s\n' "$*" >&2; exit 1; }

# `docker version` (the engine's /version), bounded: `docker info` gathers every container's state and was
# seen to hang for minutes on a busy engine while other requests were answered.
engine_answers() { command -v docker >/dev/null && timeout 20 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
server_version() { docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown; }

# Waits until the engine answers; fails early when the dockerd this script started ($1, optional) has exited.
wait_for_engine() {
    local started_pid="${1:-}" deadline=$((SECONDS + START_TIMEOUT_SECONDS))
    until engine_answers; do
        if [ -n "$started_pid" ] && ! kill -0 "$started_pid" 2>/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2
            fail "dockerd exited at start (its log: $DOCKERD_LOG)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            [ -f "$DOCKERD_LOG" ] && tail -n 20 "$DOCKERD_LOG" >&2
            fail "the engine did not answer within ${START_TIMEOUT_SECONDS} s (its log: $DOCKERD_LOG)"
        fi
        sleep 0.5
    done
}

# 1. An engine that answers is used as it is.
if engine_answers; then
    step "engine answers (server $(server_version)): reusing it"
    exit 0
fi

# 2. Only the local engine can be started here.
if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    fail "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine, or unset DOCKER_HOST to use a local one"
fi
if [ "$(id -u)" -ne 0 ] && [ -S /var/run/docker.sock ]; then
    fail "the engine at /var/run/docker.sock refuses user $(id -un): add it to the docker group, or run as root"
fi
if [ "$(id -u)" -ne 0 ]; then
    fail "no Docker engine answers, and installing or starting one needs root: start Docker yourself (or run as root)"
fi

# 3. Install the engine (Debian's docker.io: dockerd, containerd, runc and the docker CLI).
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    step "dockerd and docker present"
else
    command -v apt-get >/dev/null || fail "dockerd is not installed and there is no apt-get to install docker.io"
    step "installing docker.io with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    # With its recommends, as measured: apparmor (Debian's kernel enforces the docker-default profile) and
    # cgroupfs-mount (no systemd to mount the cgroups).
    apt-get install -y -qq docker.io >/dev/null || fail "apt-get install docker.io failed"
fi

# 4. Start it, unless installing it did, or one is already starting.
if engine_answers; then
    step "engine answers (server $(server_version)) after installing"
    exit 0
fi
if pidof dockerd >/dev/null; then
    step "dockerd is running but does not answer yet: waiting up to ${START_TIMEOUT_SECONDS} s"
elif [ -d /run/systemd/system ]; then
    step "starting docker.service with systemctl"
    systemctl start docker || fail "systemctl start docker failed: see journalctl -u docker"
else
    step "starting dockerd in the background (log: $DOCKERD_LOG)"
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    started_pid=$!
fi
wait_for_engine "${started_pid:-}"
step "engine answers (server $(server_version))"
