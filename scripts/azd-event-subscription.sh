#!/usr/bin/env bash
# azd postdeploy hook: the Event Grid system topic and the uploads subscription (infra/app/eventgrid.bicep),
# deployed once the app's code is: Event Grid validates the webhook when the subscription is created, and only
# the deployed blob trigger's extension answers. Bicep, not `az eventgrid event-subscription create` (which
# times out on Flex Consumption); the webhook key comes from listKeys inside the template.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { printf 'azd-event-subscription: error: %s\n' "$*" >&2; exit 1; }
for name in AZURE_RESOURCE_GROUP AZURE_STORAGE_ACCOUNT_NAME AZURE_FUNCTION_APP_NAME AZURE_EVENTGRID_TOPIC_NAME \
        UPLOADS_CONTAINER; do
    [ -n "${!name:-}" ] || fail "$name is not set (azd sets it from infra/main.bicep's outputs: run under azd)"
done
command -v az >/dev/null || fail "the Azure CLI (az) is not installed"

az deployment group create --resource-group "$AZURE_RESOURCE_GROUP" --name eventgrid \
    --template-file infra/app/eventgrid.bicep \
    --parameters topicName="$AZURE_EVENTGRID_TOPIC_NAME" storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
        functionAppName="$AZURE_FUNCTION_APP_NAME" uploadsContainer="$UPLOADS_CONTAINER" \
    --only-show-errors --output none
printf 'azd-event-subscription: uploads in %s now reach the blob trigger\n' "$UPLOADS_CONTAINER"
