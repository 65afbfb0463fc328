#!/usr/bin/env bash
# Build the runner image (runner/Dockerfile), and first the local Python base image when it is missing.
#
#   bash scripts/build-images.sh                 (what `make images` runs, after scripts/docker-engine.sh)
#   BASE_IMAGE=python:3.11-slim bash scripts/build-images.sh     (where a registry answers: no local base)
#   bash scripts/build-images.sh --no-cache      (rebuild the runner image from scratch, e.g. for bench/)
#
# BASE_IMAGE   base of the runner image; default pacta-runner-base:bookworm, built here when missing:
#              a Debian bookworm rootfs with Python 3.11 made by mmdebstrap (installed with apt-get if
#              missing; needs root) and imported into Docker. Any other value is pulled when not present.
# RUNNER_IMAGE tag of the runner image; default pacta-runner:local (RUNNER_IMAGE's default in the app).
# DOCKERFILE   default runner/Dockerfile; runner/Dockerfile.pacta layers the runner onto PACTA's R images.
# LOCAL_BASE_IMAGE  tag of the locally made base; default pacta-runner-base:bookworm (bench/ uses another).
#
# Idempotent and fast: the runner image carries the label pacta.runner.source-hash, a hash of its
# Dockerfile, the files .dockerignore lets into the build context, this script and the base image id;
# when the image's label matches, nothing is built (about 0.2 s). Build logs go to .local/images/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LOCAL_BASE_IMAGE="${LOCAL_BASE_IMAGE:-pacta-runner-base:bookworm}"
BASE_IMAGE="${BASE_IMAGE:-$LOCAL_BASE_IMAGE}"
RUNNER_IMAGE="${RUNNER_IMAGE:-pacta-runner:local}"
DOCKERFILE="${DOCKERFILE:-runner/Dockerfile}"
HASH_LABEL=pacta.runner.source-hash
LOG_DIR=.local/images
SUITE=bookworm
# The base image's packages: python3 is 3.11 on bookworm; passwd gives the Dockerfile its useradd.
BASE_PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,passwd
CA_DIR=/usr/local/share/ca-certificates

step() { printf 'build-images: %s\n' "$*"; }
fail() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,17s/^# \{0,1\}//p' scripts/build-images.sh; }

no_cache=false
for arg in "$@"; do
    case "$arg" in
        --no-cache) no_cache=true ;;
        -h|--help) usage; exit 0 ;;
        *) fail "unknown argument $arg (try --help)" ;;
    esac
done

# Runs a command with its output in a log file; on failure shows the log's end and fails.
run_logged() {
    local log="$1" what="$2"
    shift 2
    mkdir -p "$LOG_DIR"
    if ! "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        fail "$what failed (whole log: $log)"
    fi
}

# The apt mirror for mmdebstrap: this machine's Debian sources when they are bookworm's (deb822 file,
# with updates and security), else Debian's redirector. MIRROR=... overrides.
debian_mirror() {
    local sources=/etc/apt/sources.list.d/debian.sources
    if [ -n "${MIRROR:-}" ]; then
        echo "$MIRROR"
    elif [ -f "$sources" ] && grep -q "^Suites:.*\b$SUITE\b" "$sources"; then
        echo "$sources"
    else
        echo "http://deb.debian.org/debian"
    fi
}

build_local_base() {
    if ! command -v mmdebstrap >/dev/null; then
        [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
            || fail "mmdebstrap is missing and installing it needs root and apt-get" \
                "(or, where a registry answers, set BASE_IMAGE=python:3.11-slim)"
        step "installing mmdebstrap with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        run_logged "$LOG_DIR/apt-mmdebstrap.log" "apt-get install mmdebstrap" \
            sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends mmdebstrap'
    fi
    [ "$(id -u)" -eq 0 ] || fail "building $LOCAL_BASE_IMAGE needs root (mmdebstrap); or set BASE_IMAGE=python:3.11-slim"

    local mirror tmp
    mirror="$(debian_mirror)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/pacta-runner-base.XXXXXX")"
    # shellcheck disable=SC2064  # expand $tmp now: it is local
    trap "rm -rf '$tmp'" EXIT
    step "building $LOCAL_BASE_IMAGE: mmdebstrap $SUITE from $mirror (about 40 s; log: $LOG_DIR/base-image.log)"
    # Hooks: pip may install system-wide, as on python:3.11-slim (PEP 668 marker removed); the rootfs
    # trusts this machine's extra CAs (an HTTPS proxy that re-signs PyPI here; none elsewhere).
    run_logged "$LOG_DIR/base-image.log" "mmdebstrap" \
        mmdebstrap --variant=apt --include="$BASE_PACKAGES" \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
            --customize-hook="if [ -d $CA_DIR ]; then cp -a $CA_DIR/. \"\$1\"$CA_DIR/ && chroot \"\$1\" update-ca-certificates; fi" \
            "$SUITE" "$tmp/rootfs.tar" "$mirror"
    # Imported only now that the tar is whole: a failed bootstrap never leaves a tagged half image.
    step "importing the rootfs as $LOCAL_BASE_IMAGE"
    run_logged "$LOG_DIR/base-image-import.log" "docker import" \
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
            --change 'LABEL org.opencontainers.image.title="pacta-runner-base"' \
            --change 'LABEL org.opencontainers.image.description="Debian 12 with Python 3.11 and pip, by scripts/build-images.sh"' \
            --change 'CMD ["python3"]' \
            "$tmp/rootfs.tar" "$LOCAL_BASE_IMAGE"
    rm -rf "$tmp"
    trap - EXIT
}

# The runner image's inputs: what a change to should rebuild it. Mirrors .dockerignore.
source_hash() {
    local paths=()
    mapfile -t paths < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' .dockerignore)
    [ ${#paths[@]} -gt 0 ] || fail ".dockerignore lets nothing into the build context"
    {
        printf 'base %s\nimage %s\n' "$base_id" "$RUNNER_IMAGE"
        cat "$DOCKERFILE" .dockerignore scripts/build-images.sh
        find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name 'Dockerfile*' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
}

command -v docker >/dev/null || fail "docker is not installed: run scripts/docker-engine.sh (make images does)"
docker version >/dev/null 2>&1 || fail "no Docker engine answers: run scripts/docker-engine.sh (make images does)"

# 1. The base image.
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    step "base image $BASE_IMAGE present"
elif [ "$BASE_IMAGE" = "$LOCAL_BASE_IMAGE" ]; then
    build_local_base
else
    step "pulling $BASE_IMAGE"
    docker pull --quiet "$BASE_IMAGE" >/dev/null \
        || fail "cannot pull $BASE_IMAGE: with no registry, unset BASE_IMAGE to build $LOCAL_BASE_IMAGE locally"
fi
base_id="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE")"

# 2. The runner image, unless it was built from these very sources.
hash="$(source_hash)"
built_hash="$(docker image inspect --format "{{index .Config.Labels \"$HASH_LABEL\"}}" "$RUNNER_IMAGE" 2>/dev/null || true)"
if [ "$built_hash" = "$hash" ] && ! $no_cache; then
    step "$RUNNER_IMAGE up to date (on $BASE_IMAGE)"
    exit 0
fi
step "building $RUNNER_IMAGE on $BASE_IMAGE$($no_cache && echo ' without cache') (log: $LOG_DIR/runner-image.log)"
build_args=(--network host --build-arg "BASE_IMAGE=$BASE_IMAGE" --label "$HASH_LABEL=$hash"
    --file "$DOCKERFILE" --tag "$RUNNER_IMAGE")
$no_cache && build_args+=(--no-cache)
previous_id="$(docker image inspect --format '{{.Id}}' "$RUNNER_IMAGE" 2>/dev/null || true)"
run_logged "$LOG_DIR/runner-image.log" "docker build" docker build "${build_args[@]}" .
# The image this one replaced, unless a container still uses it (kept for debugging) or another tag names it.
if [ -n "$previous_id" ] && [ "$previous_id" != "$(docker image inspect --format '{{.Id}}' "$RUNNER_IMAGE")" ]; then
    docker rmi "$previous_id" >/dev/null 2>&1 || true
fi

# 3. It runs: Python 3.11+, the runner and the contracts import, as the non-root user.
check='import sys, os, runner.cli, orchestrations.contracts
assert sys.version_info >= (3, 11), sys.version
print("Python %d.%d.%d as uid %d" % (*sys.version_info[:3], os.getuid()))'
if ! report="$(docker run --rm --network none --entrypoint python "$RUNNER_IMAGE" -c "$check" 2>&1)"; then
    printf '%s\n' "$report" >&2
    fail "$RUNNER_IMAGE was built but does not run the runner: see above"
fi
step "$RUNNER_IMAGE built: $report, $(docker image inspect --format '{{.Size}}' "$RUNNER_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"
