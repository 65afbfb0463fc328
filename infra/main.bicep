// The whole system for `azd up`: one resource group, one resource token, no key or connection string anywhere.
// Layout after the Azure-Samples azd templates for Python Functions on Flex Consumption. Validated offline
// only (tests/infra, `make infra-check`): never deployed from the machines this project is developed on.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and seeds the resource token.')
param environmentName string

@minLength(1)
@description('Region of every resource.')
param location string

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID): granted data access to inspect runs. Empty: none.')
param principalId string = ''

@description('Durable Functions backend: the Azure Storage provider (default) or the Durable Task Scheduler.')
@allowed([
  'AzureStorage'
  'DurableTaskScheduler'
])
param durableBackend string = 'AzureStorage'

@description('Image the job starts with; the postprovision hook builds runner/Dockerfile in the registry and points the job at it.')
param runnerImage string = 'mcr.microsoft.com/k8se/quickstart-jobs:latest'

@description('Create Azure Files shares for PACTA\'s benchmark and PACTA data and mount them in the job.')
param pactaDataShares bool = false

@description('RUN_DEADLINE_SECONDS: a run longer than this is stopped (timed_out). The job\'s replica timeout is above it.')
@minValue(60)
param runDeadlineSeconds int = 3600

@secure()
@description('CALLBACK_TOKEN_KEY, stored in Key Vault: scripts/azd-callback-key.sh (preprovision) makes one per azd environment.')
param callbackTokenKey string

@description('MAX_CONCURRENT_RUNS: jobs that may run at once; the other runs wait queued, in upload order.')
@minValue(1)
@maxValue(9999)
param maxConcurrentRuns int = 10

@description('CPUs and memory of one run.')
param runnerCpu string = '2.0'
param runnerMemory string = '4Gi'

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
// The settings the app reads (orchestrations/settings.py); tests/infra checks they agree.
var uploadsContainer = 'uploads'
var runsContainer = 'runs'
var runsTable = 'runs'
var runnerEventsQueue = 'runner-events'
var artifactContainers = [
  'reports'
  'audits'
  'dashboards'
]
var taskHubName = 'PactaRunner'
var deploymentContainer = 'app-package-${take(resourceToken, 7)}'
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var jobName = '${abbrs.appJobs}runner-${take(resourceToken, 10)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identities 'app/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    appIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}app-${resourceToken}'
    runnerIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}runner-${resourceToken}'
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    containers: concat([uploadsContainer, runsContainer, deploymentContainer], artifactContainers)
    queues: [runnerEventsQueue]
    tables: [runsTable]
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.keyVaultVaults}${take(resourceToken, 20)}'
    callbackTokenKey: callbackTokenKey
  }
}

module registry 'app/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.containerRegistryRegistries}${resourceToken}'
    runnerPrincipalId: identities.outputs.runnerPrincipalId
  }
}

module job 'app/job.bicep' = {
  name: 'job'
  scope: rg
  params: {
    location: location
    tags: tags
    environmentName: '${abbrs.appManagedEnvironments}${resourceToken}'
    jobName: jobName
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    runnerIdentityId: identities.outputs.runnerIdentityId
    runnerClientId: identities.outputs.runnerClientId
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    registryServer: registry.outputs.loginServer
    image: runnerImage
    cpu: runnerCpu
    memory: runnerMemory
    replicaTimeoutSeconds: runDeadlineSeconds + 600
    dataStorageAccountName: '${abbrs.storageStorageAccounts}data${take(resourceToken, 18)}'
    pactaDataShares: pactaDataShares
  }
}

module scheduler 'app/dts.bicep' = if (durableBackend == 'DurableTaskScheduler') {
  name: 'durable-task-scheduler'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.durableTaskSchedulers}${resourceToken}'
    taskHubName: taskHubName
    appPrincipalId: identities.outputs.appPrincipalId
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    appIdentityId: identities.outputs.appIdentityId
    appClientId: identities.outputs.appClientId
    runnerClientId: identities.outputs.runnerClientId
    storageAccountName: storage.outputs.name
    deploymentContainer: deploymentContainer
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    callbackKeySecretUri: keyVault.outputs.callbackKeySecretUri
    acaJobName: job.outputs.jobName
    acaContainerName: job.outputs.containerName
    taskHubName: taskHubName
    uploadsContainer: uploadsContainer
    runsContainer: runsContainer
    runsTable: runsTable
    runnerEventsQueue: runnerEventsQueue
    runDeadlineSeconds: runDeadlineSeconds
    maxConcurrentRuns: maxConcurrentRuns
    durableBackend: durableBackend
    schedulerEndpoint: durableBackend == 'DurableTaskScheduler' ? scheduler!.outputs.endpoint : ''
  }
  dependsOn: [
    rbac
  ]
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    callbackKeySecretName: keyVault.outputs.callbackKeySecretName
    jobName: job.outputs.jobName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identities.outputs.appPrincipalId
    runnerPrincipalId: identities.outputs.runnerPrincipalId
    userPrincipalId: principalId
    inputContainers: [
      uploadsContainer
    ]
    outputContainers: concat([runsContainer], artifactContainers)
    runnerEventsQueue: runnerEventsQueue
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output ACA_JOB_NAME string = job.outputs.jobName
output ACA_ENVIRONMENT_NAME string = job.outputs.environmentName
output DURABLE_BACKEND string = durableBackend
output UPLOADS_CONTAINER string = uploadsContainer
output AZURE_EVENTGRID_TOPIC_NAME string = '${abbrs.eventGridDomainsTopics}${resourceToken}'
