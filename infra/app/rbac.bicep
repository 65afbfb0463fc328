// Least privilege, with deterministic assignment names (guid of scope, principal and role).
//   app:    Storage Blob Data Owner, Queue Data Contributor, Table Data Contributor on the account (what the
//           Functions host documents for its own storage, Durable Functions' Azure Storage provider and the
//           app's run records); the custom job operator role on the job only; Monitoring Metrics Publisher on
//           Application Insights; Key Vault Secrets User on the callback key.
//   runner: the custom input reader role on each input container, the custom output writer role on each
//           output container, Storage Queue Data Message Sender on the events queue, Monitoring Metrics
//           Publisher on Application Insights (its spans, with an Entra token) (AcrPull: registry.bicep).
//   user:   read access to blobs, queues and tables, to inspect runs (when principalId is given).
//
// Three custom roles, because the built-in ones grant more than the code calls (tests/infra/test_permissions.py
// derives the calls from the code): Container Apps Jobs Operator carries Microsoft.App/jobs/*/action
// (listSecrets among them) and the exec and logstream data actions (a console in the runner's container);
// Storage Blob Data Contributor deletes blobs and manages containers, and on the account it could rewrite the
// app's own deployment package. Creating a role definition needs Microsoft.Authorization/roleDefinitions/write
// (Owner, or User Access Administrator): docs/deploy.md, prerequisites.
param storageAccountName string
param keyVaultName string
param callbackKeySecretName string
param jobName string
param applicationInsightsName string
param appPrincipalId string
param runnerPrincipalId string
@description('The deploying user\'s object id; empty: no user assignment.')
param userPrincipalId string
@description('Containers the runner reads its inputs from (INPUT_SCOPES).')
param inputContainers array
@description('Containers the runner writes its outputs to (RUNS_CONTAINER and the artifact containers).')
param outputContainers array
@description('The queue the runner sends its completion message to (RUNNER_EVENTS_QUEUE).')
param runnerEventsQueue string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  storageQueueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}
var appOnStorage = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]
// Each action the code calls, with the operation that needs it (tests/infra/test_permissions.py checks them
// against the code's calls, and that no wildcard creeps in).
var jobOperatorActions = [
  'Microsoft.App/jobs/read' // Jobs - Get: the job's template, to start a run from it
  'Microsoft.App/jobs/start/action' // Jobs - Start
  'Microsoft.App/jobs/stop/execution/action' // Jobs - Stop Execution: one run's execution
  'Microsoft.App/jobs/execution/read' // Job Execution - Get: a run's status
  'Microsoft.App/jobs/executions/read' // Jobs Executions - List: finding a run's execution after a lost answer
]
var runnerInputDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read' // Get Blob: an input
]
var runnerOutputDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write' // Put Blob, Put Block (List): an output
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

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource inputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for container in inputContainers: {
  parent: blobService
  name: container
}]

resource outputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for container in outputContainers: {
  parent: blobService
  name: container
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource eventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: runnerEventsQueue
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

// A role definition lives at the subscription whatever the deployment's scope: its id for an assignment is
// subscriptionResourceId(roleDefinitions, name), as for the built-in roles.
resource jobOperatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'pacta-runner-job-operator')
  properties: {
    roleName: 'PACTA runner job operator ${uniqueString(resourceGroup().id)}'
    description: 'Read the runner job, start it, read and stop its executions; no secrets, no console.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: jobOperatorActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource runnerInputRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'pacta-runner-input-reader')
  properties: {
    roleName: 'PACTA runner input reader ${uniqueString(resourceGroup().id)}'
    description: 'Read blobs: the runner\'s inputs.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: runnerInputDataActions
        notDataActions: []
      }
    ]
  }
}

resource runnerOutputRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'pacta-runner-output-writer')
  properties: {
    roleName: 'PACTA runner output writer ${uniqueString(resourceGroup().id)}'
    description: 'Write blobs: the runner\'s outputs, result document and log; no read, no delete.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: runnerOutputDataActions
        notDataActions: []
      }
    ]
  }
}

resource runnerInputRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (container, index) in inputContainers: {
  name: guid(inputContainer[index].id, runnerPrincipalId, runnerInputRole.name)
  scope: inputContainer[index]
  properties: {
    principalId: runnerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', runnerInputRole.name)
  }
}]

resource runnerOutputRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (container, index) in outputContainers: {
  name: guid(outputContainer[index].id, runnerPrincipalId, runnerOutputRole.name)
  scope: outputContainer[index]
  properties: {
    principalId: runnerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', runnerOutputRole.name)
  }
}]

resource runnerMessageSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsQueue.id, runnerPrincipalId, roles.storageQueueDataMessageSender)
  scope: eventsQueue
  properties: {
    principalId: runnerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
  }
}

resource userStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in userOnStorage: {
  name: guid(storage.id, userPrincipalId, role)
  scope: storage
  properties: {
    // No principalType: azd may run as a user or, in CI, a service principal.
    principalId: userPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

resource appJobOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(job.id, appPrincipalId, jobOperatorRole.name)
  scope: job
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', jobOperatorRole.name)
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

resource runnerMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, runnerPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: runnerPrincipalId
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
