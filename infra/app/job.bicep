// The Container Apps environment (logs to Log Analytics through diagnostic settings: no workspace key) and the
// manual-trigger job the aca backend starts one execution of per run (docs/azure-container-apps.md).
param location string
param tags object
param environmentName string
param jobName string
param logAnalyticsName string
param runnerIdentityId string
@description('Client id of the runner identity: the runner sends its spans to Application Insights with an Entra token.')
param runnerClientId string
param applicationInsightsName string
param registryServer string
param image string
param cpu string
param memory string
@description('Above RUN_DEADLINE_SECONDS: the orchestration, not the platform, stops a long run.')
param replicaTimeoutSeconds int
@description('Account of the optional PACTA data shares (Azure Files over SMB needs a key: its own account).')
param dataStorageAccountName string
param pactaDataShares bool

// Where the shares are mounted: BENCHMARKS_DIR and PACTA_DATA_DIR (orchestrations/contracts.py) lie below them.
var dataMounts = [
  {
    share: 'benchmark-data'
    path: '/mnt/benchmark-data'
  }
  {
    share: 'pacta-data'
    path: '/mnt/pacta-data'
  }
]
var containerName = 'runner'
var dataVolumes = [for mount in dataMounts: {
  name: mount.share
  storageName: mount.share
  storageType: 'AzureFile'
}]
var dataVolumeMounts = [for mount in dataMounts: {
  volumeName: mount.share
  mountPath: mount.path
}]

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-log-analytics'
  scope: environment
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// PACTA's data, read-only. SMB mounts in Container Apps take the account key, so these shares live in an
// account of their own that holds nothing else; the key goes only into the environment's storage definition
// (write-only in ARM), never into a setting or an output.
resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = if (pactaDataShares) {
  // checkov:skip=CKV_AZURE_35:The Container Apps environment has no VNet in this template, so the account cannot deny by network; it holds PACTA's reference data only.
  // checkov:skip=CKV_AZURE_59:Public network access: the Container Apps environment has no VNet in this template.
  // checkov:skip=CKV_AZURE_206:Locally redundant: PACTA's reference data can be uploaded again.
  // checkov:skip=CKV_AZURE_43:The name is built from the resource token (st + data + token, at most 24 lower-case characters); checkov cannot evaluate the expression.
  // checkov:skip=CKV_AZURE_44:minimumTlsVersion is TLS1_2 below; checkov does not read the properties of a conditional (if) resource.
  name: dataStorageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = if (pactaDataShares) {
  parent: dataAccount
  name: 'default'
}

resource shares 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = [for mount in dataMounts: if (pactaDataShares) {
  parent: fileService
  name: mount.share
  properties: {
    shareQuota: 100
  }
}]

resource environmentStorages 'Microsoft.App/managedEnvironments/storages@2024-03-01' = [for mount in dataMounts: if (pactaDataShares) {
  parent: environment
  name: mount.share
  properties: {
    azureFile: {
      accountName: dataAccount.name
      accountKey: dataAccount.listKeys().keys[0].value
      shareName: mount.share
      accessMode: 'ReadOnly'
    }
  }
  dependsOn: [
    shares
  ]
}]

resource job 'Microsoft.App/jobs@2024-03-01' = {
  name: jobName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${runnerIdentityId}': {}
    }
  }
  properties: {
    environmentId: environment.id
    workloadProfileName: 'Consumption'
    configuration: {
      triggerType: 'Manual'
      // The orchestration owns retries: a platform retry would run a task twice with one callback token.
      replicaRetryLimit: 0
      replicaTimeout: replicaTimeoutSeconds
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      registries: [
        {
          server: registryServer
          identity: runnerIdentityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: containerName
          image: image
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          // The runner's spans and log records (orchestrations/telemetry.py); each execution adds TRACEPARENT.
          env: [
            {
              name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
              value: applicationInsights.properties.ConnectionString
            }
            {
              name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
              value: 'ClientId=${runnerClientId};Authorization=AAD'
            }
          ]
          volumeMounts: pactaDataShares ? dataVolumeMounts : []
        }
      ]
      volumes: pactaDataShares ? dataVolumes : []
    }
  }
  dependsOn: [
    environmentStorages
  ]
}

output jobName string = job.name
output containerName string = containerName
output environmentName string = environment.name
