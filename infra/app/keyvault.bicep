// The app's one secret, CALLBACK_TOKEN_KEY, in a Key Vault with RBAC; the app reads it as a Key Vault reference.
param location string
param tags object
param name string
@secure()
@minLength(32)
@description('The callback token key (scripts/azd-callback-key.sh makes one, once per azd environment).')
param callbackTokenKey string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:No firewall: the Flex Consumption app resolves its Key Vault reference without a VNet in this template; access is by RBAC only (Key Vault Secrets User on the one secret).
  // checkov:skip=CKV_AZURE_110:No purge protection, so that `azd down --purge` can purge the vault and a new `azd up` can reuse its name; soft delete (7 days) stays on.
  // checkov:skip=CKV_AZURE_42:Soft delete is on (enableSoftDelete, 7 days); checkov counts it as recoverable only with purge protection, left off for `azd down --purge` (see CKV_AZURE_110).
  // checkov:skip=CKV_AZURE_189:Public network access for the same reason (no VNet); no access policy exists, RBAC decides.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource callbackKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:No expiry: rotating the key fails the runs under way (runner_ended_without_report), so it is rotated deliberately (docs/deploy.md), never by a date.
  parent: vault
  name: 'callback-token-key'
  properties: {
    value: callbackTokenKey
    contentType: 'text/plain'
  }
}

output name string = vault.name
output callbackKeySecretName string = callbackKey.name
// The secret's URI without a version: the app follows the latest version.
output callbackKeySecretUri string = '${vault.properties.vaultUri}secrets/${callbackKey.name}'
