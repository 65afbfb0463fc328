#!/usr/bin/env bash
# azd postprovision hook: build the runner image in the new registry and point the job at it.
#
#   bash scripts/azd-build-runner.sh     (azd runs it after `azd provision`; rerun to roll out a new image)
#
# Builds runner/Dockerfile with `az acr build` (the registry builds it: no local Docker needed), tagged with the
# commit (or a timestamp), then `az containerapp job update --image`. Reads the outputs azd exports from
# infra/main.bicep: AZURE_RESOURCE_GROUP, AZURE_CONTAINER_REGISTRY_NAME, AZURE_CONTAINER_REGISTRY_ENDPOINT,
# ACA_JOB_NAME. Never run from the machines this project is developed on (they cannot reach Azure).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { printf 'azd-build-runner: error: %s\n' "$*" >&2; exit 1; }
for name in AZURE_RESOURCE_GROUP AZURE_CONTAINER_REGISTRY_NAME AZURE_CONTAINER_REGISTRY_ENDPOINT ACA_JOB_NAME; do
    [ -n "${!name:-}" ] || fail "$name is not set (azd sets it from infra/main.bicep's outputs: run under azd)"
done
command -v az >/dev/null || fail "the Azure CLI (az) is not installed"

tag="$(git rev-parse --short HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then tag="$tag-dirty-$(date -u +%Y%m%d%H%M%S)"; fi
image="$AZURE_CONTAINER_REGISTRY_ENDPOINT/pacta-runner:$tag"

printf 'azd-build-runner: building %s in %s\n' "$image" "$AZURE_CONTAINER_REGISTRY_NAME"
az acr build --registry "$AZURE_CONTAINER_REGISTRY_NAME" --image "pacta-runner:$tag" \
    --file runner/Dockerfile --build-arg BASE_IMAGE=python:3.11-slim . --only-show-errors
printf 'azd-build-runner: pointing job %s at %s\n' "$ACA_JOB_NAME" "$image"
az containerapp job update --resource-group "$AZURE_RESOURCE_GROUP" --name "$ACA_JOB_NAME" \
    --image "$image" --only-show-errors --output none
azd env set RUNNER_IMAGE_NAME "$image" >/dev/null 2>&1 || true
printf 'azd-build-runner: done\n'
