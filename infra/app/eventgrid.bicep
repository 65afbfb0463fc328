// Uploads reach the blob trigger through Event Grid (Flex Consumption has no polling blob trigger): a system
// topic on the account and a webhook subscription to the trigger's extension endpoint, filtered to
// BlobCreated in the uploads container. The webhook's key is the host's `blobs_extension` system key, read
// with listKeys at deployment time (the sample's post-deploy CLI step times out on Flex Consumption).
//
// Deployed by the azd postdeploy hook (scripts/azd-event-subscription.sh), after the app's code: Event Grid
// validates the webhook when the subscription is created, and only the deployed blob extension answers.
param location string = resourceGroup().location
param tags object = {}
param topicName string
param storageAccountName string
param functionAppName string
@description('The blob trigger function (function_app/uploads.py).')
param blobTriggerFunctionName string = 'on_upload'
param uploadsContainer string = 'uploads'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: topicName
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource uploads 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'uploads-to-blob-trigger'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${blobTriggerFunctionName}&code=${listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys.blobs_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${uploadsContainer}/blobs/'
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output topicName string = topic.name
