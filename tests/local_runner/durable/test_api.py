"""The extension's HTTP API, driven by the SDK's own DurableOrchestrationClient over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import aiohttp
import azure.durable_functions as df
import pytest
from aiohttp import web
from azure.durable_functions.models.utils import http_utils

from local_runner.host.durable import OrchestrationEngine
from local_runner.host.durable.api import client_binding_json, create_durable_api
from tests.local_runner.durable.conftest import EngineFactory

pytestmark = pytest.mark.azurite
MOUNT = "/runtime/webhooks/durabletask/"
Client: TypeAlias = df.DurableOrchestrationClient
Engine: TypeAlias = OrchestrationEngine


def approval(context: df.DurableOrchestrationContext) -> Any:
    context.set_custom_status({"phase": "waiting", "for": context.get_input()})
    decision = yield context.wait_for_external_event("Approval")
    return {"decision": decision}


@asynccontextmanager
async def serving(engine: Engine) -> AsyncIterator[tuple[Client, str]]:
    """The API mounted as the Functions host mounts it, on a free loopback port, and a client."""
    root = web.Application()
    root.add_subapp(MOUNT, create_durable_api(engine))
    runner = web.AppRunner(root)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}{MOUNT}"
    try:
        yield df.DurableOrchestrationClient(client_binding_json(base, engine.task_hub)), base
    finally:
        await http_utils._close_session()  # the SDK keeps one session per process
        await runner.cleanup()


@pytest.fixture
def run_api(make_engine: EngineFactory) -> Iterator[Callable[..., Any]]:
    engine = make_engine({"approval": approval})

    def run(scenario: Callable[[Client, str, Engine], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            async with serving(engine) as (client, base):
                return await scenario(client, base, engine)

        return asyncio.run(main())

    yield run


async def idle(engine: OrchestrationEngine) -> None:
    await asyncio.to_thread(engine.run_until_idle)


def test_a_client_starts_watches_and_completes_an_instance_through_the_api(run_api):
    """Inputs and event data sent by the Python client reach the orchestrator as JSON strings.

    The client posts `json.dumps(value)` as JSON (DurableOrchestrationClient.start_new /
    raise_event, utils/http_utils.post_async_request `json=`), and the extension stores the token
    it parses, a string (azure-functions-durable-extension HttpApiHandler.
    HandleStartOrchestratorRequestAsync L868-873, HandleRaiseEventRequestAsync L1006-1016;
    azure-functions-durable-python#295).
    """
    async def scenario(client: Client, _: str, engine: Engine):
        instance_id = await client.start_new("approval", None, {"run": "r1"})
        await idle(engine)
        running = await client.get_status(instance_id, show_input=True)
        await client.raise_event(instance_id, "Approval", {"ok": True})
        await idle(engine)
        done = await client.get_status(instance_id, show_history=True)
        return instance_id, running, done

    instance_id, running, done = run_api(scenario)

    assert running.runtime_status == df.OrchestrationRuntimeStatus.Running
    assert (running.input_, running.custom_status) == (
        '{"run": "r1"}', {"phase": "waiting", "for": '{"run": "r1"}'},
    )
    assert done.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert (done.instance_id, done.output) == (instance_id, {"decision": '{"ok": true}'})
    assert [e["EventType"] for e in done.historyEvents] == [
        "ExecutionStarted", "EventRaised", "ExecutionCompleted",
    ]


def test_an_orchestrator_that_indexes_its_input_or_event_data_as_a_dict_fails(
    make_engine: EngineFactory,
):
    """Code that treats the client's input or event data as a dict fails here as under the host.

    Both arrive as `str` (HttpApiHandler.HandleStartOrchestratorRequestAsync L868-873,
    HandleRaiseEventRequestAsync L1006-1016; azure-functions-durable-python#295).
    """
    def by_input(context: df.DurableOrchestrationContext) -> Any:
        yield from ()
        return context.get_input()["run"]

    def by_event(context: df.DurableOrchestrationContext) -> Any:
        event = yield context.wait_for_external_event("Approval")
        return event["ok"]

    engine = make_engine({"by_input": by_input, "by_event": by_event})

    async def scenario(client: Client, _: str, engine: Engine):
        first = await client.start_new("by_input", None, {"run": "r1"})
        second = await client.start_new("by_event", None, None)
        await idle(engine)
        await client.raise_event(second, "Approval", {"ok": True})
        await idle(engine)
        return [await client.get_status(i) for i in (first, second)]

    async def main() -> Any:
        async with serving(engine) as (client, base):
            return await scenario(client, base, engine)

    statuses = asyncio.run(main())

    assert [(s.runtime_status, s.output) for s in statuses] == [
        (df.OrchestrationRuntimeStatus.Failed,
         "Orchestrator function 'by_input' failed: string indices must be integers, not 'str'"),
        (df.OrchestrationRuntimeStatus.Failed,
         "Orchestrator function 'by_event' failed: string indices must be integers, not 'str'"),
    ]


def test_start_answers_with_management_urls_that_work(run_api):
    async def scenario(client: Client, base: str, engine: Engine):
        async with aiohttp.ClientSession() as session:
            start_url = f"{base}orchestrators/approval/fixed-id"
            async with session.post(start_url, json='"x"') as started:
                payload = await started.json()
            await idle(engine)
            async with session.get(payload["statusQueryGetUri"]) as polled:
                return started.status, payload, polled.status, await polled.json()

    started, payload, polled, status = run_api(scenario)

    assert (started, payload["id"], polled) == (202, "fixed-id", 202)
    instance_url = payload["statusQueryGetUri"].split("?")[0]
    assert payload["sendEventPostUri"].startswith(f"{instance_url}/raiseEvent/")
    # aiohttp's json= posts the text '"x"' as a JSON string; nothing is unwrapped.
    assert (status["runtimeStatus"], status["input"]) == ("Running", '"x"')


def test_the_client_sees_unknown_and_finished_instances_as_the_extension_reports_them(run_api):
    async def scenario(client: Client, _: str, engine: Engine):
        missing = await client.get_status("nobody")
        errors = []
        for call in (
            client.raise_event("nobody", "Approval", 1),
            client.terminate("nobody", "why"),
            client.start_new("no_such_orchestrator"),
        ):
            try:
                await call
            except Exception as exc:
                errors.append(str(exc))
        instance_id = await client.start_new("approval", "dup", None)
        try:
            await client.start_new("approval", "dup", None)
        except Exception as exc:
            errors.append(str(exc))
        await client.terminate(instance_id, "stop now")
        await client.terminate(instance_id, "again")  # 410: the client accepts it quietly
        try:
            await client.raise_event(instance_id, "Approval", 1)
        except Exception as exc:
            errors.append(str(exc))
        terminated = await client.get_status(instance_id)
        return missing, errors, terminated

    missing, errors, terminated = run_api(scenario)

    assert not missing
    assert errors[0] == "No instance with ID nobody found."
    assert errors[1] == "No instance with ID 'nobody' found."
    assert "No orchestrator function named 'no_such_orchestrator'" in errors[2]
    assert "already exists and is Pending" in errors[3]
    assert errors[4] == "Instance with ID dup is gone: either completed or failed"
    assert (terminated.runtime_status, terminated.output) == (
        df.OrchestrationRuntimeStatus.Terminated, "stop now",
    )


def test_queries_filter_instances_by_runtime_status(run_api):
    async def scenario(client: Client, _: str, engine: Engine):
        for instance_id in ("q-1", "q-2"):
            await client.start_new("approval", instance_id, None)
        await idle(engine)
        await client.terminate("q-2", "not needed")
        running = await client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Running])
        everything = await client.get_status_all()
        return [s.instance_id for s in running], sorted(s.instance_id for s in everything)

    assert run_api(scenario) == (["q-1"], ["q-1", "q-2"])


def test_raising_an_event_with_a_body_that_is_not_json_is_a_bad_request(run_api):
    """HttpApiHandler.HandleRaiseEventRequestAsync (L999-1016): application/json only, and a body
    ConvertToJToken refuses (not JSON, or empty) is 400 "Invalid JSON content"; a JSON object is
    stored as that object."""
    json_type = {"Content-Type": "application/json"}

    async def scenario(client: Client, base: str, engine: Engine):
        await client.start_new("approval", "plain", None)
        url = f"{base}instances/plain/raiseEvent/Approval"
        async with aiohttp.ClientSession() as session:
            text = await session.post(url, data="yes", headers={"Content-Type": "text/plain"})
            empty = await session.post(url, data="", headers=json_type)
            raw = await session.post(url, data=json.dumps({"ok": 1}), headers=json_type)
            statuses = text.status, empty.status, raw.status, (await empty.json())["Message"]
        await idle(engine)
        return statuses, await client.get_status("plain")

    statuses, status = run_api(scenario)

    assert statuses == (400, 400, 202, "Invalid JSON content")
    assert status.output == {"decision": {"ok": 1}}
