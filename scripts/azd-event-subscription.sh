#!/usr/bin/env bash
# azd postdeploy hook: the Event Grid system topic and the uploads subscription (infra/app/eventgrid.bicep),
# deployed once the app's code is: Event Grid validates the webhook when the subscription is created, and only
# the deployed blob trigger's extension answers. Bicep, not `az eventgrid event-subscription create` (which
# times out on Flex Consumption); the webhook key comes from listKeys inside the template.
#
# It waits until the app lists the blob trigger (a Flex Consumption app may still be loading the new package),
# then deploys, and tries again after a failed handshake (a cold instance may answer too late).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { printf 'azd-event-subscription: error: %s\n' "$*" >&2; exit 1; }
for name in AZURE_RESOURCE_GROUP AZURE_STORAGE_ACCOUNT_NAME AZURE_FUNCTION_APP_NAME AZURE_EVENTGRID_TOPIC_NAME \
        UPLOADS_CONTAINER; do
    [ -n "${!name:-}" ] || fail "$name is not set (azd sets it from infra/main.bicep's outputs: run under azd)"
done
command -v az >/dev/null || fail "the Azure CLI (az) is not installed"

trigger="on_upload"  # function_app/uploads.py; infra/app/eventgrid.bicep's blobTriggerFunctionName
attempts="${EVENT_SUBSCRIPTION_ATTEMPTS:-3}"
pause="${EVENT_SUBSCRIPTION_PAUSE_SECONDS:-30}"
checks="${EVENT_SUBSCRIPTION_READY_CHECKS:-20}"

ready=""
for _ in $(seq 1 "$checks"); do
    functions="$(az functionapp function list --resource-group "$AZURE_RESOURCE_GROUP" \
        --name "$AZURE_FUNCTION_APP_NAME" --query "[].name" --output tsv --only-show-errors || true)"
    if printf '%s\n' "$functions" | grep -qx "$AZURE_FUNCTION_APP_NAME/$trigger"; then ready=1; break; fi
    printf 'azd-event-subscription: waiting for %s to list %s\n' "$AZURE_FUNCTION_APP_NAME" "$trigger"
    sleep "$pause"
done
[ -n "$ready" ] || fail "$AZURE_FUNCTION_APP_NAME does not list the blob trigger $trigger after $checks checks:" \
    "did the code deploy? See its logs in Application Insights, then run 'azd hooks run postdeploy'"

for attempt in $(seq 1 "$attempts"); do
    if az deployment group create --resource-group "$AZURE_RESOURCE_GROUP" --name eventgrid \
            --template-file infra/app/eventgrid.bicep \
            --parameters topicName="$AZURE_EVENTGRID_TOPIC_NAME" storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
                functionAppName="$AZURE_FUNCTION_APP_NAME" blobTriggerFunctionName="$trigger" \
                uploadsContainer="$UPLOADS_CONTAINER" \
            --only-show-errors --output none; then
        printf 'azd-event-subscription: uploads in %s now reach the blob trigger\n' "$UPLOADS_CONTAINER"
        exit 0
    fi
    if [ "$attempt" -lt "$attempts" ]; then
        printf 'azd-event-subscription: attempt %s of %s failed; again in %s s\n' "$attempt" "$attempts" "$pause"
        sleep "$pause"
    fi
done
fail "the Event Grid subscription was not made in $attempts attempts (above: why); run 'azd hooks run postdeploy'" \
    "to try again"
