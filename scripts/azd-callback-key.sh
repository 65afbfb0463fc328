#!/usr/bin/env bash
# azd preprovision hook: make CALLBACK_TOKEN_KEY once per azd environment, for infra/main.bicep to store in
# Key Vault (the app reads it as a Key Vault reference). Never changed afterwards: a new key fails the runs
# under way (docs/deploy.md, "Rotating the callback key"). azd keeps it in .azure/<env>/.env (keep .azure/
# out of git); the app sees it only through Key Vault.
set -euo pipefail

if [ -n "$(azd env get-value CALLBACK_TOKEN_KEY 2>/dev/null || true)" ]; then
    printf 'azd-callback-key: CALLBACK_TOKEN_KEY present\n'
    exit 0
fi
key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
azd env set CALLBACK_TOKEN_KEY "$key" >/dev/null
printf 'azd-callback-key: made CALLBACK_TOKEN_KEY (64 characters)\n'
