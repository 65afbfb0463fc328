// The registry the runner image is built in (`az acr build`, scripts/azd-build-runner.sh) and pulled from by
// the runner's identity (AcrPull, here so that the job is created after it).
param location string
param tags object
param name string
param runnerPrincipalId string

var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139:Public network access: `az acr build` and the Container Apps job reach it without a VNet; pulls need AcrPull (admin user and anonymous pull are off). Private endpoints need Premium.
  // checkov:skip=CKV_AZURE_163:Vulnerability scanning is Defender for Containers, a subscription plan outside this template.
  // checkov:skip=CKV_AZURE_166:Quarantine needs the Premium sku; the one image is built here from runner/Dockerfile.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource runnerAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, runnerPrincipalId, acrPull)
  scope: registry
  properties: {
    principalId: runnerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
