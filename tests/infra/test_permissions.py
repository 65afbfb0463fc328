"""The roles the templates grant cover exactly what the code calls, and no more.

What each identity calls is read from the code itself: every storage SDK call in `runner/` (the runner's
identity) and in `orchestrations/` and `function_app/` (the app's), and every Container Apps call the aca
backend makes, each mapped to the permission Azure checks for it. An SDK call this file has no permission for
fails the test, so a new call cannot slip past the roles unnoticed.

What each role allows is read from the templates (the custom roles) and from Microsoft's generated built-in
roles reference (`builtin_roles.json`, copied from MicrosoftDocs/azure-docs with its commit). Built-in roles
are granted only where the platform documents them as what it needs (the Functions host's own storage, Key
Vault references, Application Insights with Entra auth, image pulls); everywhere the code alone decides, the
templates define a custom role with exactly the code's permissions, because the built-in ones grant more.
"""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueServiceClient

from orchestrations.contracts import PACTA_ARTIFACT_CONTAINERS
from orchestrations.settings import AppSettings
from tests.conftest import PROJECT_ROOT
from tests.infra.bicep import block, custom_roles, read, role_grants

BUILT_IN = json.loads((Path(__file__).parent / "builtin_roles.json").read_text(encoding="utf-8"))["roles"]
ROLE_NAMES = {role["id"]: name for name, role in BUILT_IN.items()}
# Not in the stored reference (its page is newer than the stored copies); the scheduler's data role.
ROLE_NAMES["0ad04412-c4d5-4796-b79c-f76d14c8d402"] = "Durable Task Data Contributor"

STORAGE = "Microsoft.Storage/storageAccounts"
BLOB_READ = f"{STORAGE}/blobServices/containers/blobs/read"
BLOB_WRITE = f"{STORAGE}/blobServices/containers/blobs/write"
BLOB_DELETE = f"{STORAGE}/blobServices/containers/blobs/delete"
CONTAINER_WRITE = f"{STORAGE}/blobServices/containers/write"
QUEUE_WRITE = f"{STORAGE}/queueServices/queues/write"
MESSAGE_ADD = f"{STORAGE}/queueServices/queues/messages/add/action"
MESSAGE_WRITE = f"{STORAGE}/queueServices/queues/messages/write"
TABLE_WRITE = f"{STORAGE}/tableServices/tables/write"
ENTITY_READ = f"{STORAGE}/tableServices/tables/entities/read"
ENTITY_ADD = f"{STORAGE}/tableServices/tables/entities/add/action"
ENTITY_UPDATE = f"{STORAGE}/tableServices/tables/entities/update/action"
ENTITY_WRITE = f"{STORAGE}/tableServices/tables/entities/write"
ENTITY_DELETE = f"{STORAGE}/tableServices/tables/entities/delete"

# Each storage SDK method that sends a request, and the permissions any one of which lets it through
# (Azure Storage's "Authorize with Microsoft Entra ID" permission per REST operation).
STORAGE_CALLS: dict[str, tuple[str, ...]] = {
    "download_blob": (BLOB_READ,),  # Get Blob
    "get_blob_properties": (BLOB_READ,),  # Get Blob Properties
    "exists": (BLOB_READ,),  # Get Blob Properties
    "list_blobs": (BLOB_READ,),  # List Blobs
    "upload_blob": (BLOB_WRITE,),  # Put Blob / Put Block / Put Block List, overwriting
    "set_blob_metadata": (BLOB_WRITE,),  # Set Blob Metadata
    "delete_blob": (BLOB_DELETE,),  # Delete Blob
    "create_container": (CONTAINER_WRITE,),  # Create Container
    "send_message": (MESSAGE_ADD, MESSAGE_WRITE),  # Put Message
    "create_queue": (QUEUE_WRITE,),  # Create Queue
    "create_table": (TABLE_WRITE,),  # Create Table
    "get_entity": (ENTITY_READ,),  # Query Entities, one
    "query_entities": (ENTITY_READ,),  # Query Entities
    "list_entities": (ENTITY_READ,),  # Query Entities
    "create_entity": (ENTITY_ADD, ENTITY_WRITE),  # Insert Entity
    "update_entity": (ENTITY_UPDATE, ENTITY_WRITE),  # Update / Merge Entity
    "upsert_entity": (ENTITY_WRITE,),  # Insert Or Replace / Merge
    "delete_entity": (ENTITY_DELETE,),  # Delete Entity
    # Entity Group Transaction: each operation is checked as itself; the run store's batches insert, update and
    # upsert (Insert Or Replace), so write is what covers them all.
    "submit_transaction": (ENTITY_WRITE,),
}
# Storage SDK methods that send nothing (clients of a child resource, closing), and names a storage client
# shares with everyday Python whose calls in this code are not storage calls (checked below).
NO_REQUEST = {
    "close", "from_connection_string", "from_blob_url", "from_container_url", "from_queue_url",
    "from_table_url", "get_blob_client", "get_container_client", "get_queue_client", "get_table_client",
}
# Calls made only when the deployment did not make the resource (a fresh Azurite, locally): in Azure the
# containers and the queue exist and the runner may not create them
# (tests/runner/test_storage_uploads.py::test_with_the_container_and_queue_made_the_runner_only_reads_writes_and_sends).
ONLY_WHEN_MISSING = {("runner/storage.py", "create_container"), ("runner/storage.py", "create_queue")}

# Each Container Apps call of the aca backend (`self._client.<group>.<method>`) and the permission ARM checks
# (Azure's permissions reference, Microsoft.App, with the operation's own description).
ARM_CALLS: dict[str, str] = {
    "jobs.get": "Microsoft.App/jobs/read",  # Get a Container Apps Job
    "jobs.begin_start": "Microsoft.App/jobs/start/action",  # Start a Container Apps Job
    "jobs.begin_stop_execution": "Microsoft.App/jobs/stop/execution/action",  # Stop a ... Job's specific execution
    "job_execution": "Microsoft.App/jobs/execution/read",  # Get a single execution from a Container Apps Job
    "jobs_executions.list": "Microsoft.App/jobs/executions/read",  # Get a Container Apps Job's execution history
}

RUNNER_CODE = ("runner",)
APP_CODE = ("orchestrations", "function_app")


@dataclass(frozen=True)
class Call:
    file: str
    line: int
    method: str


def _storage_methods() -> set[str]:
    clients = (BlobServiceClient, ContainerClient, BlobClient, QueueServiceClient, QueueClient,
               TableServiceClient, TableClient)
    return {name for client in clients for name, member in inspect.getmembers(client)
            if not name.startswith("_") and callable(member)}


STORAGE_METHODS = _storage_methods()


def storage_calls(source: str, file: str) -> list[Call]:
    """Every call in `source` of a method a storage client has (whatever the receiver: over-approximate)."""
    return [
        Call(file, node.lineno, node.func.attr)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr in STORAGE_METHODS and node.func.attr not in NO_REQUEST
    ]


def arm_calls(source: str, file: str) -> list[Call]:
    """Every call through the ARM client (`self._client...`), as `group.method` or `method`."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        chain, target = [node.func.attr], node.func.value
        while isinstance(target, ast.Attribute) and target.attr != "_client":
            chain.insert(0, target.attr)
            target = target.value
        if isinstance(target, ast.Attribute) and target.attr == "_client":
            calls.append(Call(file, node.lineno, ".".join(chain)))
    return calls


def python_files(roots: Iterable[str]) -> list[Path]:
    return sorted(path for root in roots for path in (PROJECT_ROOT / root).rglob("*.py"))


def needs(calls: list[Call], table: dict[str, tuple[str, ...]]) -> dict[tuple[str, ...], list[Call]]:
    """The permissions `calls` need, each with the calls that need it; an unknown call fails, naming it."""
    unknown = [call for call in calls if call.method not in table]
    assert not unknown, (
        "calls with no known permission (add each to STORAGE_CALLS or ARM_CALLS with the permission Azure "
        f"checks, then grant it): {[f'{call.file}:{call.line} {call.method}' for call in unknown]}"
    )
    found: dict[tuple[str, ...], list[Call]] = {}
    for call in calls:
        found.setdefault(table[call.method], []).append(call)
    return found


def code_needs(roots: Iterable[str]) -> dict[tuple[str, ...], list[Call]]:
    calls = []
    for path in python_files(roots):
        relative = str(path.relative_to(PROJECT_ROOT))
        calls += [call for call in storage_calls(path.read_text(encoding="utf-8"), relative)
                  if (relative, call.method) not in ONLY_WHEN_MISSING]
    return needs([call for call in calls if not _not_storage(call)], STORAGE_CALLS)


def _not_storage(call: Call) -> bool:
    """`exists` on a pathlib.Path (the runner's workspace) shares its name with BlobClient.exists."""
    if call.method != "exists":
        return False
    line = (PROJECT_ROOT / call.file).read_text(encoding="utf-8").splitlines()[call.line - 1]
    return "path" in line.lower() or "dir" in line.lower()


def allowed(role: str) -> tuple[set[str], set[str]]:
    """A role's actions and data actions (patterns, lower case): a custom role from the templates, or built-in."""
    if role.startswith("custom:"):
        custom = custom_roles()[role.removeprefix("custom:")]
        return {a.lower() for a in custom.actions}, {a.lower() for a in custom.data_actions}
    built_in = BUILT_IN[ROLE_NAMES[role]]
    return {a.lower() for a in built_in["actions"]}, {a.lower() for a in built_in["dataActions"]}


def grants_of(principal: str) -> dict[str, set[str]]:
    """The principal's roles by scope."""
    scopes: dict[str, set[str]] = {}
    for grant in role_grants():
        if grant.principal == principal:
            scopes.setdefault(grant.scope, set()).update(grant.role_ids)
    return scopes


def permits(roles: Iterable[str], permission: str) -> bool:
    """Whether any of `roles` allows `permission` (ARM matches patterns case-insensitively; `*` any text)."""
    wanted = permission.lower()
    return any(fnmatchcase(wanted, pattern) for role in roles for pattern in set().union(*allowed(role)))


# Where each of the runner's permissions must hold: reads on the input containers, writes on the output ones,
# the message on the events queue.
RUNNER_SCOPES = {(BLOB_READ,): "inputContainer", (BLOB_WRITE,): "outputContainer",
                 (MESSAGE_ADD, MESSAGE_WRITE): "eventsQueue"}


def test_the_runner_is_granted_each_permission_its_code_needs_where_it_needs_it() -> None:
    runner = grants_of("runnerPrincipalId")
    found = code_needs(RUNNER_CODE)

    assert set(found) == set(RUNNER_SCOPES), f"the runner's calls changed: {sorted(found)}; set their scopes"
    for permissions, scope in RUNNER_SCOPES.items():
        assert any(permits(runner.get(scope, ()), permission) for permission in permissions), (permissions, scope)


def test_the_app_is_granted_each_permission_its_code_needs() -> None:
    app = grants_of("appPrincipalId")
    found = code_needs(APP_CODE)

    assert (BLOB_READ,) in found and (ENTITY_READ,) in found  # the scan sees the app's storage calls
    for permissions in found:
        assert any(permits(app["storage"], permission) for permission in permissions), permissions
    for permission in arm_needs():
        assert permits(app["job"], permission), permission


def arm_needs() -> set[str]:
    backend = PROJECT_ROOT / "orchestrations" / "aca_backend.py"
    calls = arm_calls(backend.read_text(encoding="utf-8"), "orchestrations/aca_backend.py")
    return {permission for (permission,) in needs(calls, {k: (v,) for k, v in ARM_CALLS.items()})}


def test_the_custom_roles_hold_exactly_the_permissions_the_code_calls() -> None:
    roles = custom_roles()
    job_operator = roles["jobOperatorRole"]

    assert {a.lower() for a in job_operator.actions} == {a.lower() for a in arm_needs()}
    assert job_operator.data_actions == ()
    assert (roles["runnerInputRole"].actions, roles["runnerInputRole"].data_actions) == ((), (BLOB_READ,))
    assert (roles["runnerOutputRole"].actions, roles["runnerOutputRole"].data_actions) == ((), (BLOB_WRITE,))
    for role in roles.values():
        assert not any("*" in action for action in (*role.actions, *role.data_actions)), role.name
        assert role.assignable_scopes == "[ resourceGroup().id ]", role.name


# The built-in roles, each where the platform documents it as what it needs, not the code.
PLATFORM_ROLES = {
    # The Functions host on identity-based AzureWebJobsStorage with a blob trigger, a queue trigger and Durable
    # Functions' Azure Storage provider ("Connecting to host storage with an identity"; Durable Functions'
    # "identity-based connections"): these three on the account. They also cover the app's own calls (above).
    ("appPrincipalId", "Storage Blob Data Owner", "storage"),
    ("appPrincipalId", "Storage Queue Data Contributor", "storage"),
    ("appPrincipalId", "Storage Table Data Contributor", "storage"),
    # Application Insights with local auth off: telemetry with the app identity's token.
    ("appPrincipalId", "Monitoring Metrics Publisher", "applicationInsights"),
    # The Key Vault reference of CALLBACK_TOKEN_KEY, on that one secret.
    ("appPrincipalId", "Key Vault Secrets User", "callbackKey"),
    # With durableBackend = DurableTaskScheduler: the scheduler's data role on the task hub.
    ("appPrincipalId", "Durable Task Data Contributor", "taskHub"),
    # The job pulls the runner image with the runner's identity.
    ("runnerPrincipalId", "AcrPull", "registry"),
    # Sends its completion message, on the events queue only: the role holds that one data action.
    ("runnerPrincipalId", "Storage Queue Data Message Sender", "eventsQueue"),
    # The runner's spans and log records, with its own identity's token (orchestrations/telemetry.py).
    ("runnerPrincipalId", "Monitoring Metrics Publisher", "applicationInsights"),
    # The deploying user reads runs.
    ("userPrincipalId", "Storage Blob Data Reader", "storage"),
    ("userPrincipalId", "Storage Queue Data Reader", "storage"),
    ("userPrincipalId", "Storage Table Data Reader", "storage"),
}


def test_every_grant_is_a_custom_role_or_a_platform_documented_one() -> None:
    built_in = {(grant.principal, ROLE_NAMES[role], grant.scope)
                for grant in role_grants() for role in grant.role_ids if not role.startswith("custom:")}
    custom = {(grant.principal, role, grant.scope)
              for grant in role_grants() for role in grant.role_ids if role.startswith("custom:")}

    assert built_in == PLATFORM_ROLES
    assert custom == {
        ("appPrincipalId", "custom:jobOperatorRole", "job"),
        ("runnerPrincipalId", "custom:runnerInputRole", "inputContainer"),
        ("runnerPrincipalId", "custom:runnerOutputRole", "outputContainer"),
    }
    assert BUILT_IN["Storage Queue Data Message Sender"]["dataActions"] == [MESSAGE_ADD]
    assert BUILT_IN["Storage Queue Data Message Sender"]["actions"] == []


def test_the_built_in_roles_the_custom_ones_replace_would_grant_more() -> None:
    """Why the custom roles: the job's secrets and a console in its container; deleting and rewriting any blob."""
    jobs_operator = "b9a307c4-5aa3-4b52-ba60-2b17c136cd7b"
    blob_contributor = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

    assert permits([jobs_operator], "Microsoft.App/jobs/listSecrets/action")
    assert permits([jobs_operator], "Microsoft.App/jobs/exec/action")
    assert permits([blob_contributor], BLOB_DELETE)
    assert permits([blob_contributor], CONTAINER_WRITE)
    assert not permits(["custom:runnerOutputRole"], BLOB_DELETE)
    assert not permits(["custom:jobOperatorRole"], "Microsoft.App/jobs/listSecrets/action")


def default(setting: str) -> str:
    return str(AppSettings.model_fields[setting].default)


def test_the_runner_scopes_are_the_containers_and_queue_the_app_uses() -> None:
    rbac = read("main.bicep")[read("main.bicep").index("module rbac "):]
    variables = {"uploadsContainer": default("uploads_container")}

    inputs = [variables[line.strip()] for line in block(rbac, "inputContainers: ").splitlines()[1:-1]]
    # INPUT_SCOPES, which the templates do not set, defaults to the uploads container.
    assert inputs == [default("uploads_container")]
    main = read("main.bicep")
    assert f"var runsContainer = '{default('runs_container')}'" in main
    assert f"var runnerEventsQueue = '{default('runner_events_queue')}'" in main
    assert "outputContainers: concat([runsContainer], artifactContainers)" in rbac
    artifacts = block(read("main.bicep"), "var artifactContainers = ")
    assert sorted(line.strip().strip("'") for line in artifacts.splitlines()[1:-1]) == sorted(
        PACTA_ARTIFACT_CONTAINERS.values())
    assert "runnerEventsQueue: runnerEventsQueue" in rbac


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("blob.delete_blob()", "delete_blob"),  # known, but no role of the runner grants it
        ("container.set_container_metadata({})", "set_container_metadata"),  # unknown: needs a permission first
    ],
)
def test_a_new_storage_call_is_caught(source: str, problem: str) -> None:
    calls = storage_calls(source, "runner/example.py")

    assert [call.method for call in calls] == [problem]
    if problem in STORAGE_CALLS:
        runner = grants_of("runnerPrincipalId")
        assert not any(permits(roles, BLOB_DELETE) for roles in runner.values())
    else:
        with pytest.raises(AssertionError, match="no known permission"):
            needs(calls, STORAGE_CALLS)


def test_a_new_arm_call_is_caught() -> None:
    calls = arm_calls("self._client.jobs.begin_delete(group, name).result()", "orchestrations/aca_backend.py")

    assert [call.method for call in calls] == ["jobs.begin_delete"]
    with pytest.raises(AssertionError, match="no known permission"):
        needs(calls, {k: (v,) for k, v in ARM_CALLS.items()})
