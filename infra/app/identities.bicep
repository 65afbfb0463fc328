// The two user-assigned identities: the Function App's and the runner's (the job's).
param location string
param tags object
param appIdentityName string
param runnerIdentityName string

resource app 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

resource runner 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: runnerIdentityName
  location: location
  tags: tags
}

output appIdentityId string = app.id
output appClientId string = app.properties.clientId
output appPrincipalId string = app.properties.principalId
output runnerIdentityId string = runner.id
output runnerClientId string = runner.properties.clientId
output runnerPrincipalId string = runner.properties.principalId
