// Least privilege, with deterministic assignment names (guid of scope, principal and role).
//   app:    Storage Blob Data Owner, Queue Data Contributor, Table Data Contributor on the account (the Functions
//           host, Durable Functions and the app's run records); Container Apps Jobs Operator on the job only;
//           Monitoring Metrics Publisher on Application Insights; Key Vault Secrets User on the callback key.
//   runner: Storage Blob Data Contributor and Queue Data Message Sender on the account (AcrPull: registry.bicep).
//   user:   read access to blobs, queues and tables, to inspect runs (when principalId is given).
param storageAccountName string
param keyVaultName string
param callbackKeySecretName string
param jobName string
param applicationInsightsName string
param appPrincipalId string
param runnerPrincipalId string
@description('The deploying user\'s object id; empty: no user assignment.')
param userPrincipalId string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  storageQueueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
  containerAppsJobsOperator: 'b9a307c4-5aa3-4b52-ba60-2b17c136cd7b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}
var appOnStorage = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]
var runnerOnStorage = [
  roles.storageBlobDataContributor
  roles.storageQueueDataMessageSender
]
var userOnStorage = empty(userPrincipalId) ? [] : [
  roles.storageBlobDataReader
  roles.storageQueueDataReader
  roles.storageTableDataReader
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource callbackKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: callbackKeySecretName
}

resource job 'Microsoft.App/jobs@2024-03-01' existing = {
  name: jobName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in appOnStorage: {
  name: guid(storage.id, appPrincipalId, role)
  scope: storage
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource runnerStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in runnerOnStorage: {
  name: guid(storage.id, runnerPrincipalId, role)
  scope: storage
  properties: {
    principalId: runnerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource userStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in userOnStorage: {
  name: guid(storage.id, userPrincipalId, role)
  scope: storage
  properties: {
    // No principalType: azd may run as a user or, in CI, a service principal.
    principalId: userPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource appJobsOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(job.id, appPrincipalId, roles.containerAppsJobsOperator)
  scope: job
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.containerAppsJobsOperator)
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(callbackKey.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: callbackKey
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}
