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
        {"run": "r1"}, {"phase": "waiting", "for": {"run": "r1"}},
    )
    assert done.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert (done.instance_id, done.output) == (instance_id, {"decision": {"ok": True}})
    assert [e["EventType"] for e in done.historyEvents] == [
        "ExecutionStarted", "EventRaised", "ExecutionCompleted",
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
    assert (status["runtimeStatus"], status["input"]) == ("Running", "x")


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
    async def scenario(client: Client, base: str, engine: Engine):
        await client.start_new("approval", "plain", None)
        url = f"{base}instances/plain/raiseEvent/Approval"
        async with aiohttp.ClientSession() as session:
            text = await session.post(url, data="yes", headers={"Content-Type": "text/plain"})
            raw = await session.post(
                url, data=json.dumps({"ok": 1}), headers={"Content-Type": "application/json"}
            )
            return text.status, raw.status

    assert run_api(scenario) == (400, 202)
