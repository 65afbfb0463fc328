// The Function App on Flex Consumption (Python 3.11) with its user-assigned identity and the app's settings:
// identity-based storage, the aca backend's job, the callback key as a Key Vault reference. No key anywhere.
param location string
param tags object
param name string
param planName string
param appIdentityId string
param appClientId string
param runnerClientId string
param storageAccountName string
param deploymentContainer string
param applicationInsightsName string
param callbackKeySecretUri string
param acaJobName string
param acaContainerName string
param uploadsContainer string
param runsContainer string
param runsTable string
param runnerEventsQueue string
param runDeadlineSeconds int
param maxConcurrentRuns int
@allowed([
  'AzureStorage'
  'DurableTaskScheduler'
])
param durableBackend string
@description('The scheduler\'s endpoint with durableBackend = DurableTaskScheduler; else empty.')
param schedulerEndpoint string
param taskHubName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is a regional option with always-ready cost; a run survives a lost instance (durable orchestration).
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Public network access: Event Grid delivers uploads to the blob trigger's webhook; the app has no anonymous HTTP function and no VNet in this template.
  // checkov:skip=CKV_AZURE_17:Client certificates: the only inbound call is Event Grid's webhook, authenticated by the blobs_extension key.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales by instance count (maximumInstanceCount); there is no App Service minimum instance count.
  // checkov:skip=CKV_AZURE_213:No HTTP endpoint to probe: the app's functions are blob, queue and durable triggers.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: appIdentityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// The app's settings (docs/settings.md); tests/infra checks each against orchestrations/settings.py.
var appSettings = {
  // The Functions host and the app: storage by the app's identity, no key.
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: appClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  // Telemetry with an Entra token (local auth is off on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appClientId};Authorization=AAD'
  PYTHON_SCRIPT_FILE_NAME: 'entry.py'
  TASK_HUB_NAME: taskHubName
  CALLBACK_TOKEN_KEY: '@Microsoft.KeyVault(SecretUri=${callbackKeySecretUri})'
  UPLOAD_TRIGGER_SOURCE: 'EventGrid'
  UPLOADS_CONTAINER: uploadsContainer
  RUNS_CONTAINER: runsContainer
  RUNS_TABLE: runsTable
  RUNNER_EVENTS_QUEUE: runnerEventsQueue
  RUN_DEADLINE_SECONDS: string(runDeadlineSeconds)
  MAX_CONCURRENT_RUNS: string(maxConcurrentRuns)
  // The aca backend: which job, as whom.
  RUNNER_BACKEND: 'aca'
  ACA_SUBSCRIPTION_ID: subscription().subscriptionId
  ACA_RESOURCE_GROUP: resourceGroup().name
  ACA_JOB_NAME: acaJobName
  ACA_CONTAINER_NAME: acaContainerName
  ACA_MANAGED_IDENTITY_CLIENT_ID: appClientId
  // The runner: its own identity and the account URLs, never a key.
  RUNNER_STORAGE_AUTH: 'managed_identity'
  RUNNER_CLIENT_ID: runnerClientId
  RUNNER_BLOB_ACCOUNT_URL: storage.properties.primaryEndpoints.blob
  RUNNER_QUEUE_ACCOUNT_URL: storage.properties.primaryEndpoints.queue
}

// The Durable Task Scheduler instead of the Azure Storage provider: host.json's storage provider, overridden
// by app settings (AzureFunctionsJobHost__*), and the scheduler's endpoint with the app's identity (no key).
var schedulerSettings = {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${schedulerEndpoint};Authentication=ManagedIdentity;ClientID=${appClientId}'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov reads this appsettings resource as a whole site; the checks below are about the site's web config.
  // checkov:skip=CKV_AZURE_13:App Service Authentication: not an app settings property; the app has no user-facing HTTP endpoint.
  // checkov:skip=CKV_AZURE_63:HTTP logging is a web config property, not an app setting; the host logs to Application Insights.
  // checkov:skip=CKV_AZURE_65:Detailed error messages are a web config property, not an app setting (off by default).
  // checkov:skip=CKV_AZURE_66:Failed request tracing is a web config property, not an app setting.
  // checkov:skip=CKV_AZURE_80:.NET version: a Python app.
  // checkov:skip=CKV_AZURE_88:Azure Files storage: Flex Consumption deploys from a blob container, not Azure Files.
  // checkov:skip=CKV_AZURE_222:Public network access is a site property; see the Function App above.
  parent: functionApp
  name: 'appsettings'
  properties: durableBackend == 'DurableTaskScheduler' ? union(appSettings, schedulerSettings) : appSettings
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
