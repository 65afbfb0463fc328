"""Hostile uploads: every one ends in exactly one run record, and none stops the others.

The property test drives the real intake (`handle_upload`, reading each blob through `StoredUpload`
as the blob trigger's BlobClient binding does) against a private Azurite, with the SDK's own
`DurableOrchestrationClient` talking to the in-process durable engine over HTTP. The flow tests run
the whole app on the in-process host.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import pytest
from aiohttp import web
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.durable_functions.models.utils import http_utils
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, QueueMessage
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from local_runner.host.clock import ManualClock
from local_runner.host.durable import InstanceStore, OrchestrationEngine
from local_runner.host.durable.api import client_binding_json, create_durable_api
from local_runner.host.host import LocalHost
from orchestrations import intake, runtime
from orchestrations.contracts import (
    RunnerEvent,
    RunnerEventStatus,
    RunPolicy,
    RunRequest,
    RunStatus,
    RunTaskInput,
    SourceBlob,
    TaskType,
)
from orchestrations.intake import ORCHESTRATOR_NAME, StoredUpload, derive_run_id
from orchestrations.job_spec import build_job_spec
from orchestrations.run_store import RunStore
from tests.flow.conftest import FlowEnv, api_get, wait_for, wait_for_end
from tests.local_runner.host.raw_blobs import put_blob_raw

pytestmark = pytest.mark.azurite

MOUNT = "/runtime/webhooks/durabletask/"
PLACEHOLDER = "__UPLOADS__"  # the example's uploads container, filled in once it has a name
PORTFOLIO_URI = f"az://{PLACEHOLDER}/parse_portfolio/p.csv"
REJECTION_CODES = {
    "invalid_name", "empty_upload", "upload_too_large", "unknown_task_type", "wrong_file_type", "invalid_request",
    "request_too_large", "request_too_deep", "input_not_allowed",
}
PORTFOLIO = b"isin,market_value,currency\nGB0007980591,10000,USD\n"


# --- what a hostile client uploads ----------------------------------------------------------------

_PLAIN = st.text(st.characters(whitelist_categories=["L", "N"], whitelist_characters=" -_."), min_size=1, max_size=12)
_WELL_FORMED_NAMES = st.builds(
    lambda task, stem: f"{task.value}/{stem}{task.upload_suffix}", st.sampled_from(TaskType),
    _PLAIN.filter(lambda stem: stem not in (".", "..")),
)
_SEGMENTS = st.one_of(
    st.sampled_from([
        "..", ".", "", "back\\..\\slash", "a\\b", "x" * 300, "%2F..%2F", " ", "日本語", "?q=1", "#frag", "\x07",
        "\u202e", "a.csv", "p.json",
    ]),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=12),
)
_HOSTILE_NAMES = st.builds(
    lambda first, middle, suffix: "/".join([first, *middle]) + suffix,
    st.sampled_from([*(task.value for task in TaskType), "make_coffee", "", "Parse_Portfolio", ".."]),
    st.lists(_SEGMENTS, max_size=3),
    st.sampled_from([".csv", ".json", ".JSON", "", "/"]),
)
_NAMES = st.one_of(_WELL_FORMED_NAMES, _HOSTILE_NAMES)
_URIS = st.one_of(
    _PLAIN.map(lambda stem: f"az://{PLACEHOLDER}/parse_portfolio/{stem}.csv"),
    st.sampled_from([
        "az://pactarunner-instances/run-0123456789/input.json", "az://azure-webjobs-secrets/host.json",
        f"az://{PLACEHOLDER}/../runs/x.csv", f"az://{PLACEHOLDER}-x/a.csv", "az://runs/run-other/outputs/a.csv",
        f"az://{PLACEHOLDER}//a.csv", f"az://{PLACEHOLDER}/a\\..\\b.csv", "az://", "az:///a", "https://evil/a",
        f"az://{PLACEHOLDER}/" + "a" * 2000,
    ]),
    st.text(max_size=20).map(lambda tail: f"az://{PLACEHOLDER}/{tail}"),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_DOCUMENTS = st.fixed_dictionaries(
    {"BlobURIs": st.one_of(st.lists(_URIS.filter(lambda uri: PLACEHOLDER in uri), min_size=1, max_size=3),
                           st.lists(_URIS, max_size=3))},
    optional={
        "AnalysisID": st.sampled_from(["analysis.0123", "", "../x", "a/b"]),
        "HoldingsDate": st.sampled_from(["2022-12-31", "31.12.2022", "2023-02-30"]),
        "PortfolioName": st.text(max_size=12),
        "Inherit": st.sampled_from(["GENERAL_2022Q4", "../GENERAL"]),
        "Extra": _JSON,
    },
)
_DOCUMENT_TEXTS = st.one_of(
    _DOCUMENTS.map(json.dumps), _DOCUMENTS.map(lambda document: json.dumps(document, ensure_ascii=False))
)


def _with(value: str) -> bytes:
    return ('{"BlobURIs": ["' + PORTFOLIO_URI + '"], "x": ' + value + "}").encode()


_CONTENTS = st.one_of(
    _DOCUMENT_TEXTS.map(str.encode),
    _DOCUMENT_TEXTS.map(lambda text: b"\xef\xbb\xbf" + text.encode()),  # a byte order mark
    _DOCUMENT_TEXTS.map(lambda text: text.encode("utf-16")),
    st.tuples(_DOCUMENT_TEXTS, st.integers(0, 80)).map(lambda cut: cut[0][: cut[1]].encode()),  # truncated
    st.integers(1, 6000).map(lambda depth: _with("[" * depth + "]" * depth)),
    st.integers(1, 6000).map(lambda depth: _with('{"a":' * depth + "1" + "}" * depth)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "9" * 5000, '"\\ud800"', '"\\udfff\\ud800"']).map(_with),
    st.just(_with('"' + "é" * 60_000 + '"')),  # 120 KB of UTF-8, 360 KB once JSON escapes it
    st.binary(max_size=200),
    st.just(PORTFOLIO),
)


# --- the intake against Azurite and the durable engine's HTTP API ---------------------------------


def accept_run(context: df.DurableOrchestrationContext) -> Any:
    """Stands in for run_task: takes its input as run_task does (it fails the instance if that breaks)."""
    run = RunTaskInput.from_payload(context.get_input())
    return run.request.run_id
    yield  # a generator, as orchestrators are


@dataclass
class Intake:
    """The intake wired as the app wires it: a runs table, a durable client, an uploads account."""

    connection: str
    run_store: RunStore
    engine: OrchestrationEngine
    client: df.DurableOrchestrationClient
    loop: asyncio.AbstractEventLoop

    def handle(self, upload: intake.Upload) -> str | None:
        return self.loop.run_until_complete(intake.handle_upload(
            upload, self.client, run_store=self.run_store, max_bytes=1024 * 1024,
            input_scopes=[f"az://{upload.container}/"], policy=RunPolicy(), now=datetime.now(UTC),
        ))


@pytest.fixture
def real_intake(azurite: str, unique_name: str) -> Iterator[Intake]:
    hub = f"hub{unique_name}"
    engine = OrchestrationEngine(
        InstanceStore.from_connection_string(azurite, hub),
        orchestrators={ORCHESTRATOR_NAME: df.Orchestrator.create(accept_run)},
        run_activity=lambda name, _: pytest.fail(f"no activity is scheduled, not even {name}"),
        clock=ManualClock(), task_hub=hub,
    )
    loop = asyncio.new_event_loop()
    root = web.Application()
    root.add_subapp(MOUNT, create_durable_api(engine))
    runner = web.AppRunner(root)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    base = f"http://127.0.0.1:{runner.addresses[0][1]}{MOUNT}"
    client = df.DurableOrchestrationClient(client_binding_json(base, hub))
    try:
        yield Intake(azurite, RunStore.from_connection_string(azurite, f"runs{unique_name}"), engine, client, loop)
    finally:
        loop.run_until_complete(http_utils._close_session())  # the SDK keeps one session per process
        loop.run_until_complete(runner.cleanup())
        loop.close()
        engine.stop()


def stored_name(connection: str, container: str, name: str) -> str:
    """The name Azurite stored (it turns backslashes into slashes). Its listing answers 500 for a
    container holding a control character (asked once, no retries), and then the name is the one sent."""
    listing = BlobServiceClient.from_connection_string(connection, retry_total=0).get_container_client(container)
    try:
        [blob] = listing.list_blobs()
        return str(blob.name)
    except HttpResponseError:
        return name.replace("\\", "/")


def test_every_hostile_upload_ends_in_exactly_one_record_and_never_stays_queued(
    real_intake: Intake, unique_name: str
) -> None:
    service = BlobServiceClient.from_connection_string(real_intake.connection)
    containers = (f"{unique_name}-{number}" for number in itertools.count())

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=_NAMES, content=_CONTENTS)
    def each_upload(name: str, content: bytes) -> None:
        container = next(containers)
        service.create_container(container)
        if put_blob_raw(real_intake.connection, container, name, content.replace(
            PLACEHOLDER.encode(), container.encode()
        )).status_code != 201:
            event("refused by storage")
            return  # storage refused the name (empty, too long): there is no upload
        upload = StoredUpload(service.get_blob_client(container, stored_name(real_intake.connection, container, name)))

        run_id = real_intake.handle(upload)
        again = real_intake.handle(upload)  # the trigger delivers at least once

        records = [r for r in real_intake.run_store.list_runs(limit=100_000)
                   if r.source_uri.startswith(f"az://{container}/")]
        assert [r.run_id for r in records] == [run_id] and again == run_id
        [record] = records
        event(record.error.code if record.error else record.status.value)  # --hypothesis-show-statistics
        if record.status is RunStatus.REJECTED:
            assert record.error is not None and record.error.code in REJECTION_CODES, record.error
            assert 20 < len(record.error.message) <= intake.MAX_ERROR_MESSAGE_CHARS
            assert real_intake.engine.get_status(run_id) is None
        else:
            assert record.status is RunStatus.QUEUED
            real_intake.engine.run_until_idle()
            status = real_intake.engine.get_status(run_id)
            assert status is not None and status["runtimeStatus"] == "Completed", status

    each_upload()


# --- the whole app on the in-process host ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["process", "docker"], indirect=True)
def test_a_report_request_naming_the_task_hubs_own_container_is_refused_and_starts_no_job(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host()
    hub_container = f"{flow_env.env['TASK_HUB_NAME'].lower()}-instances"
    document = {"AnalysisID": "analysis.1", "BlobURIs": [f"az://{hub_container}/run-0123456789/state.json"]}

    record = wait_for_end(flow_env, flow_env.upload("create_report/steal.json", json.dumps(document).encode()))

    assert record.status is RunStatus.REJECTED and record.error is not None
    assert record.error.code == "input_not_allowed"
    assert f"az://{hub_container}/run-0123456789/state.json" in record.error.message
    assert "INPUT_SCOPES" in record.error.message
    assert host.engine.get_status(record.run_id) is None and flow_env.executions() == []


def test_a_blob_no_client_can_fetch_is_rejected_and_the_upload_after_it_runs(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    start_host()
    flow_env.blobs.create_container(flow_env.uploads)
    # Azurite stores it as parse_portfolio/back/../slash.csv, which the SDK collapses when it asks for it.
    assert put_blob_raw(flow_env.connection, flow_env.uploads, "parse_portfolio/back\\..\\slash.csv", b"x").ok
    after = flow_env.upload("parse_portfolio/c.csv", PORTFOLIO)

    hostile = wait_for_end(flow_env, derive_run_id(flow_env.uploads, "parse_portfolio/back/../slash.csv", ""))
    record = wait_for_end(flow_env, after)

    assert hostile.status is RunStatus.REJECTED and hostile.error is not None
    assert hostile.error.code == "invalid_name" and "'..'" in hostile.error.message
    assert record.status is RunStatus.SUCCEEDED, record.error


def test_a_request_nested_5000_deep_is_rejected_with_a_record(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    start_host()
    content = _with("[" * 5000 + "]" * 5000).replace(PLACEHOLDER.encode(), flow_env.uploads.encode())

    record = wait_for_end(flow_env, flow_env.upload("create_report/deep.json", content))

    assert record.status is RunStatus.REJECTED and record.error is not None
    assert record.error.code == "request_too_deep"


@pytest.mark.parametrize("run_id", ["a%2Fb", "..%2F..", "RUN-0123456789", "x" * 65, "run-0123456789%27"])
def test_a_run_id_no_run_can_have_is_a_404_with_a_reason(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], run_id: str
) -> None:
    host = start_host()

    response = api_get(host, f"runs/{run_id}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"


@pytest.mark.parametrize("backend", ["process", "docker"], indirect=True)
def test_a_job_given_an_input_outside_its_scopes_reads_nothing_and_says_so(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    """The runner's own check, in the real runner (a process, or the image on Docker): a job the intake never
    started, given another run's output, downloads nothing."""
    start_host(deliver_completions=False)
    runs = flow_env.env["RUNS_CONTAINER"]
    with contextlib.suppress(ResourceExistsError):
        flow_env.blobs.create_container(runs)
    stolen = flow_env.blobs.get_blob_client(runs, "run-someone-else/outputs/a.csv")
    stolen.upload_blob(b"isin,market_value,currency\nGB0007980591,10000,USD\n", overwrite=True)
    run_id = f"run-{flow_env.name}-out-of-scope"
    request = RunRequest(
        run_id=run_id, task_type=TaskType.CREATE_REPORT, inputs=[f"az://{runs}/run-someone-else/outputs/a.csv"],
        source=SourceBlob(container=flow_env.uploads, name="create_report/x.json", etag="e", size=1,
                          uri=f"az://{flow_env.uploads}/create_report/x.json"),
        requested_at=datetime.now(UTC), request_document={"BlobURIs": [f"az://{runs}/run-someone-else/outputs/a.csv"]},
    )
    spec = build_job_spec(request, "t" * 43, runtime.settings())
    flow_env.run_ids.append(run_id)

    runtime.backend().start(spec)

    queue = QueueClient.from_connection_string(flow_env.connection, flow_env.env["RUNNER_EVENTS_QUEUE"])
    message = wait_for(lambda: next(iter(_peek(queue)), None), what="the runner's completion message", timeout=120)
    event = RunnerEvent.model_validate_json(message.content)
    assert event.status is RunnerEventStatus.FAILED and event.error is not None
    assert event.error.code == "input_not_allowed"
    assert f"az://{runs}/run-someone-else/outputs/a.csv" in event.error.message
    log = flow_env.read_blob(f"az://{runs}/{run_id}/runner.log").decode()
    assert "nothing was downloaded" in event.error.message and "downloaded az://" not in log


def _peek(queue: QueueClient) -> list[QueueMessage]:
    try:
        return list(queue.peek_messages(max_messages=1))
    except ResourceNotFoundError:  # the runner creates the queue
        return []
