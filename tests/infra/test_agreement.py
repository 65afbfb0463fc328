"""The templates and the app agree (read as text: no Bicep compiler or Azure here).

Every app setting the Bicep sets is one the app reads or documents; every setting the aca backend requires is
set, and the settings validate as the app would read them in Azure; the Event Grid filter matches
UPLOADS_CONTAINER (the roles: test_permissions.py);
the job's definition is one the aca backend accepts without a warning; no setting or output holds a key.
"""

from __future__ import annotations

import json
import re

import pytest
from azure.mgmt.appcontainers.models import Job, JobConfiguration, JobConfigurationManualTriggerConfig, JobProperties

from orchestrations.aca_backend import definition_problems
from orchestrations.contracts import PACTA_BENCHMARKS_DIR, PACTA_DATA_DIR
from orchestrations.settings import AcaSettings, AppSettings, UploadTriggerSource
from tests.conftest import PROJECT_ROOT
from tests.infra.bicep import Value, block, object_properties, read, role_grants, string_var

SETTINGS_DOC = (PROJECT_ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
ACA_DOC = (PROJECT_ROOT / "docs" / "azure-container-apps.md").read_text(encoding="utf-8")
FUNCTION = read("app/function.bicep")
MAIN = read("main.bicep")
JOB = read("app/job.bicep")
APP_SETTINGS = object_properties(FUNCTION, "var appSettings =")
SCHEDULER_SETTINGS = object_properties(FUNCTION, "var schedulerSettings =")
# Settings the Functions host reads, not the app: each with why it is set.
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential": "identity-based host storage (docs/settings.md)",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where telemetry goes; its instrumentation key is no credential "
    "with local auth off (monitoring.bicep)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry with the app identity's Entra token",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type": "host.json override: the scheduler",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName": "the same",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING": "the scheduler's endpoint and identity (no key)",
}
# What each expression stands for in Azure, to read the settings as the app would.
AZURE_VALUES = {
    "AzureWebJobsStorage__clientId": "11111111-1111-1111-1111-111111111111",
    "AzureWebJobsStorage__blobServiceUri": "https://stexample.blob.core.windows.net/",
    "AzureWebJobsStorage__queueServiceUri": "https://stexample.queue.core.windows.net/",
    "AzureWebJobsStorage__tableServiceUri": "https://stexample.table.core.windows.net/",
    "CALLBACK_TOKEN_KEY": "resolved-from-key-vault-" + "k" * 40,
    "RUN_DEADLINE_SECONDS": "3600",
    "MAX_CONCURRENT_RUNS": "10",
    "TASK_HUB_NAME": "PactaRunner",
    "ACA_SUBSCRIPTION_ID": "22222222-2222-2222-2222-222222222222",
    "ACA_RESOURCE_GROUP": "rg-example",
    "ACA_JOB_NAME": "caj-runner-example",
    "ACA_CONTAINER_NAME": "runner",
    "ACA_MANAGED_IDENTITY_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
    "RUNNER_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
    "RUNNER_BLOB_ACCOUNT_URL": "https://stexample.blob.core.windows.net/",
    "RUNNER_QUEUE_ACCOUNT_URL": "https://stexample.queue.core.windows.net/",
}


def app_setting_names() -> set[str]:
    models = (AppSettings, AcaSettings)
    return {str(field.validation_alias) for model in models for field in model.model_fields.values()}


def test_every_setting_is_one_the_app_reads_or_documents() -> None:
    read_by_app = app_setting_names()
    for name in {**APP_SETTINGS, **SCHEDULER_SETTINGS}:
        if name in HOST_SETTINGS:
            continue
        assert name in read_by_app or f"`{name}`" in SETTINGS_DOC, f"{name}: neither read nor documented"
        assert f"`{name}`" in SETTINGS_DOC + ACA_DOC or name.startswith("AzureWebJobsStorage__"), (
            f"{name}: read but not documented"
        )
    assert "PYTHON_SCRIPT_FILE_NAME" in APP_SETTINGS and APP_SETTINGS["PYTHON_SCRIPT_FILE_NAME"].literal == "entry.py"
    # Flex Consumption sets the runtime in functionAppConfig; these settings are refused there.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "AzureWebJobsStorage"} & set(APP_SETTINGS)


def test_every_setting_the_aca_backend_requires_is_set() -> None:
    required = {str(field.validation_alias) for field in AcaSettings.model_fields.values() if field.is_required()}
    assert required == {"ACA_SUBSCRIPTION_ID", "ACA_RESOURCE_GROUP", "ACA_JOB_NAME"}
    assert required <= set(APP_SETTINGS)


def test_the_settings_validate_as_the_app_reads_them_in_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in APP_SETTINGS.items():
        if name in HOST_SETTINGS:
            continue
        # A plain parameter passed from main.bicep's `var <name> = '...'` reads as that literal.
        from_main = re.search(rf"^var {value.source} = '([^']*)'$", MAIN, flags=re.M)
        resolved = value.literal or (from_main.group(1) if from_main else None) or AZURE_VALUES.get(name)
        assert resolved is not None, f"{name} = {value.source}: no Azure value to read it with (add to AZURE_VALUES)"
        monkeypatch.setenv(name, resolved)
    monkeypatch.delenv("AZURE_FUNCTIONS_ENVIRONMENT", raising=False)
    settings = AppSettings()
    aca = AcaSettings()
    assert settings.runs_on_aca and settings.runner_uses_managed_identity
    assert settings.upload_source is UploadTriggerSource.EVENT_GRID
    assert settings.storage_connection is None and settings.runner_storage_connection is None
    assert aca.job_name == "caj-runner-example" and aca.managed_identity_client_id == AZURE_VALUES[
        "ACA_MANAGED_IDENTITY_CLIENT_ID"]
    assert APP_SETTINGS["CALLBACK_TOKEN_KEY"].source.startswith("'@Microsoft.KeyVault(SecretUri=")


def test_the_storage_the_templates_create_is_the_storage_the_app_uses() -> None:
    defaults = AppSettings.model_fields
    containers = block(MAIN, "containers: concat(")
    assert string_var(MAIN, "uploadsContainer") == defaults["uploads_container"].default
    assert string_var(MAIN, "runsContainer") == defaults["runs_container"].default
    assert string_var(MAIN, "runsTable") == defaults["runs_table"].default
    assert string_var(MAIN, "runnerEventsQueue") == defaults["runner_events_queue"].default
    for name in ("reports_container", "audits_container", "dashboards_container"):
        assert f"'{defaults[name].default}'" in block(MAIN, "var artifactContainers =")
    assert "uploadsContainer, runsContainer, deploymentContainer" in containers
    for setting, var in (("UPLOADS_CONTAINER", "uploadsContainer"), ("RUNS_CONTAINER", "runsContainer"),
                         ("RUNS_TABLE", "runsTable"), ("RUNNER_EVENTS_QUEUE", "runnerEventsQueue")):
        assert APP_SETTINGS[setting] == Value(var)
        assert f"    {var}: {var}\n" in block(MAIN, "module function ")


def test_the_event_grid_subscription_delivers_uploads_to_the_blob_trigger() -> None:
    grid = read("app/eventgrid.bicep")
    subscription = object_properties(block(grid, "resource uploads "), "  properties: ")
    event_filter = object_properties(block(grid, "resource uploads "), "    filter: ")
    assert subscription["eventDeliverySchema"].literal == "EventGridSchema"
    assert block(grid, "      includedEventTypes:").split() == ["[", "'Microsoft.Storage.BlobCreated'", "]"]
    subject = "'/blobServices/default/containers/${uploadsContainer}/blobs/'"
    assert event_filter["subjectBeginsWith"].source == subject
    # The hook passes main.bicep's UPLOADS_CONTAINER, the same variable the app setting is made from.
    assert "output UPLOADS_CONTAINER string = uploadsContainer" in MAIN
    hook = (PROJECT_ROOT / "scripts" / "azd-event-subscription.sh").read_text()
    assert 'uploadsContainer="$UPLOADS_CONTAINER"' in hook
    # The webhook names the blob trigger function, by the name the app gives it.
    trigger = re.search(r"param blobTriggerFunctionName string = '(\w+)'", grid)
    uploads = (PROJECT_ROOT / "function_app" / "uploads.py").read_text()
    assert trigger and re.search(rf"async def {trigger.group(1)}\(blob", uploads)
    webhook = "functionName=Host.Functions.${blobTriggerFunctionName}&code=${listKeys('${functionApp.id}/host/default'"
    assert webhook in grid
    assert ".systemKeys.blobs_extension}" in grid


def test_role_assignment_names_are_deterministic() -> None:
    for grant in role_grants():
        assert grant.scope and grant.principal  # role_grants() asserts name: guid(scope, principal, role)
    assert "newGuid" not in "".join(read(path) for path in ("app/rbac.bicep", "app/registry.bicep", "app/dts.bicep"))


def test_the_job_is_one_the_aca_backend_accepts_without_a_warning() -> None:
    job = object_properties(JOB, "    configuration: ")
    trigger = object_properties(JOB, "      manualTriggerConfig: ")
    deadline = int(json.loads((PROJECT_ROOT / "infra" / "main.parameters.json").read_text())["parameters"][
        "runDeadlineSeconds"]["value"].removeprefix("${RUN_DEADLINE_SECONDS=").removesuffix("}"))
    assert deadline == AppSettings.model_fields["run_deadline_seconds"].default
    timeout = re.search(r"replicaTimeoutSeconds: runDeadlineSeconds \+ (\d+)\n", MAIN)
    assert timeout and job["replicaTimeout"] == Value("replicaTimeoutSeconds")
    trigger_type = job["triggerType"].literal
    assert trigger_type is not None

    def definition(retry_limit: int, timeout_seconds: int) -> Job:
        return Job(location="westeurope", properties=JobProperties(configuration=JobConfiguration(
            trigger_type=trigger_type, replica_retry_limit=retry_limit, replica_timeout=timeout_seconds,
            manual_trigger_config=JobConfigurationManualTriggerConfig(
                parallelism=int(trigger["parallelism"].source),
                replica_completion_count=int(trigger["replicaCompletionCount"].source)),
        )))

    as_written = definition(int(job["replicaRetryLimit"].source), deadline + int(timeout.group(1)))
    assert definition_problems(as_written, deadline) == []
    # The check reads this definition: a retry limit or a short timeout would each be warned about.
    assert len(definition_problems(definition(1, deadline), deadline)) == 2
    # The smallest deadline the template accepts keeps the timeout above it too.
    minimum = re.search(r"@minValue\((\d+)\)\nparam runDeadlineSeconds int", MAIN)
    assert minimum and definition_problems(as_written, int(minimum.group(1))) == []
    assert (trigger["parallelism"].source, trigger["replicaCompletionCount"].source) == ("1", "1")
    # Pulls by the runner's identity; the runner's identity is the job's.
    assert "identity: runnerIdentityId" in block(JOB, "      registries:")
    assert "'${runnerIdentityId}': {}" in JOB


def test_the_data_shares_are_mounted_where_the_pacta_commands_look() -> None:
    mounts = re.findall(r"path: '(/[^']+)'", block(JOB, "var dataMounts ="))
    assert len(mounts) == 2
    for directory in (PACTA_BENCHMARKS_DIR, PACTA_DATA_DIR):
        assert any(directory.startswith(mount + "/") for mount in mounts), directory
    assert "accessMode: 'ReadOnly'" in JOB


KEY_MARKERS = ("AccountKey=", "SharedAccessKey", "SharedAccessSignature", "DefaultEndpointsProtocol", "listKeys(",
               "primaryKey", "secondaryKey", "sig=")


def test_no_setting_or_output_holds_a_key_or_connection_string() -> None:
    for name, value in {**APP_SETTINGS, **SCHEDULER_SETTINGS}.items():
        assert not any(marker in value.source for marker in KEY_MARKERS), name
        if "ConnectionString" in value.source or "CONNECTION_STRING" in name:
            assert name in {"APPLICATIONINSIGHTS_CONNECTION_STRING", "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"}
    assert "DisableLocalAuth: true" in read("app/monitoring.bicep")
    assert "Authentication=ManagedIdentity" in SCHEDULER_SETTINGS["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"].source
    for path in sorted((PROJECT_ROOT / "infra").rglob("*.bicep")):
        text = path.read_text(encoding="utf-8")
        secure = set(re.findall(r"@secure\(\)\n(?:@.*\n)*param (\w+)", text))
        for output in re.findall(r"^output .*$", text, flags=re.M):
            markers = (*KEY_MARKERS, "ConnectionString", "secret.", ".value")
            assert not any(marker in output for marker in markers), output
            assert not any(re.search(rf"\b{name}\b", output) for name in secure), output
        # listKeys only where a key is the only way in: the webhook's key, the SMB share's key.
        if "listKeys(" in text:
            assert path.name in {"eventgrid.bicep", "job.bicep"}, path.name
    assert "allowSharedKeyAccess: false" in read("app/storage.bicep")
    assert "adminUserEnabled: false" in read("app/registry.bicep")
    assert "enableRbacAuthorization: true" in read("app/keyvault.bicep")
    parameters = (PROJECT_ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8")
    assert '"callbackTokenKey": { "value": "${CALLBACK_TOKEN_KEY}" }' in parameters


def test_the_durable_backend_parameter_switches_the_storage_provider() -> None:
    assert "durableBackend == 'DurableTaskScheduler' ? union(appSettings, schedulerSettings) : appSettings" in FUNCTION
    assert SCHEDULER_SETTINGS["AzureFunctionsJobHost__extensions__durableTask__storageProvider__type"].literal == (
        "azureManaged")
    name = SCHEDULER_SETTINGS["AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName"]
    assert name.literal in SCHEDULER_SETTINGS
    host = json.loads((PROJECT_ROOT / "host.json").read_text())
    assert host["extensions"]["durableTask"]["hubName"] == "%TASK_HUB_NAME%" and "TASK_HUB_NAME" in APP_SETTINGS
