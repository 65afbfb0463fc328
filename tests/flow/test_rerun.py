"""Rerunning a run: `POST /api/runs/{run_id}/rerun` through the in-process host, real Azurite, real jobs.

A rerun is a new run of the very blob version the original ran, admitted and started by intake's own code,
its record linking back (`rerun_of`), the original record untouched; a version that is gone is refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from local_runner.host.clock import ManualClock
from local_runner.host.host import LocalHost
from orchestrations import activities
from orchestrations.contracts import RunStatus, StartJobInput
from orchestrations.intake import derive_rerun_id
from tests.flow.conftest import FlowEnv, api_post, scheduled_activities, wait_for, wait_for_end

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

PORTFOLIO = b"isin,market_value,currency\nGB0007980591,10000,USD\n"


def rerun(host: LocalHost, flow: FlowEnv, run_id: str) -> Any:
    answer = api_post(host, f"runs/{run_id}/rerun")
    if answer.status_code in (200, 201):
        flow.run_ids.append(answer.json()["run_id"])  # the flow's executions and clean-up count it
    return answer


def test_a_rerun_runs_the_same_blob_version_as_a_new_linked_run_and_leaves_the_original_untouched(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host(clock=ManualClock())
    original_id = flow_env.upload("parse_portfolio/again.csv", PORTFOLIO)
    original = wait_for_end(flow_env, original_id, step=host.poll_triggers_once)

    answer = rerun(host, flow_env, original_id)

    assert answer.status_code == 201, answer.text
    assert answer.json() == {"run_id": derive_rerun_id(original_id, 1), "rerun_of": original_id}
    record = wait_for_end(flow_env, answer.json()["run_id"], step=host.poll_triggers_once)
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.rerun_of == original_id
    assert (record.source_uri, record.source_etag, record.task_type) == (
        original.source_uri, original.source_etag, original.task_type,
    )
    assert record.outputs_count == 1 and record.outputs != original.outputs
    assert record.result_uri is not None and f"/{record.run_id}/" in record.result_uri
    assert flow_env.record(original_id) == original
    assert scheduled_activities(host, record.run_id) == ["acquire_slot", "start_job", "release_slot", "record_outcome"]
    assert sorted(flow_env.executions()) == sorted([original_id, record.run_id])


def test_a_repeated_rerun_post_answers_the_rerun_under_way_and_a_later_one_starts_the_next(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    release = threading.Event()
    first_rerun = []

    def hold_reruns(payload: str | None) -> str:
        job = StartJobInput.from_payload(json.loads(payload or "null"))
        if job.request.rerun_of is not None and not first_rerun:
            first_rerun.append(job.request.run_id)
            release.wait(60)
        return json.dumps(activities.start_job(json.loads(payload or "null")))

    host = start_host(clock=ManualClock(), activity_overrides={"start_job": hold_reruns})
    original_id = flow_env.upload("parse_portfolio/retried.csv", PORTFOLIO)
    wait_for_end(flow_env, original_id, step=host.poll_triggers_once)
    try:
        first = rerun(host, flow_env, original_id)
        wait_for(lambda: first_rerun, what="the rerun's start to be held")
        repeated = rerun(host, flow_env, original_id)
    finally:
        release.set()

    assert first.status_code == 201 and repeated.status_code == 200
    assert repeated.json() == first.json() == {"run_id": first_rerun[0], "rerun_of": original_id}
    ended = wait_for_end(flow_env, first_rerun[0], step=host.poll_triggers_once)
    assert ended.status is RunStatus.SUCCEEDED
    later = rerun(host, flow_env, original_id)
    assert later.status_code == 201
    assert later.json() == {"run_id": derive_rerun_id(original_id, 2), "rerun_of": original_id}
    assert wait_for_end(flow_env, later.json()["run_id"], step=host.poll_triggers_once).rerun_of == original_id
    assert flow_env.executions().count(first_rerun[0]) == 1


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_a_rerun_of_a_blob_version_that_is_gone_is_refused_and_starts_nothing(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], change: str
) -> None:
    host = start_host(clock=ManualClock())
    name = f"parse_portfolio/{change}.csv"
    original_id = flow_env.upload(name, PORTFOLIO)
    original = wait_for_end(flow_env, original_id, step=host.poll_triggers_once)
    blob = flow_env.blobs.get_blob_client(flow_env.uploads, name)
    if change == "replaced":
        blob.upload_blob(PORTFOLIO + b"US0378331005,500,USD\n", overwrite=True)
    else:
        blob.delete_blob()

    answer = rerun(host, flow_env, original_id)

    assert answer.status_code == 409
    error = answer.json()["error"]
    assert answer.json() == {"error": error} and error["code"] == "source_version_gone"
    assert original.source_etag is not None and original.source_etag in error["message"]
    assert "upload the file again" in error["message"]
    assert flow_env.record(derive_rerun_id(original_id, 1)) is None
    assert flow_env.record(original_id) == original


def test_a_run_still_under_way_or_rejected_or_unknown_is_not_rerun(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host(clock=ManualClock(), RUNNER_COMMAND='["python", "-c", "import time; time.sleep(600)"]')
    running_id = flow_env.upload("parse_portfolio/busy.csv", PORTFOLIO)
    rejected_id = flow_env.upload("parse_portfolio/empty.csv", b"")
    wait_for(lambda: (r := flow_env.record(running_id)) is not None and r.status is RunStatus.RUNNING,
             step=host.poll_triggers_once, what="the run to be running")
    wait_for(lambda: flow_env.record(rejected_id), step=host.poll_triggers_once, what="the rejection")

    busy, rejected = rerun(host, flow_env, running_id), rerun(host, flow_env, rejected_id)
    unknown, junk = rerun(host, flow_env, "run-" + "0" * 28), rerun(host, flow_env, "NOT_A_RUN")
    assert api_post(host, f"runs/{running_id}/cancel").status_code == 202  # the sleeping job is stopped

    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "run_not_ended")
    assert "running" in busy.json()["error"]["message"] and "cancel" in busy.json()["error"]["message"]
    assert (rejected.status_code, rejected.json()["error"]["code"]) == (409, "run_not_rerunnable")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "run_not_found")
    assert (junk.status_code, junk.json()["error"]["code"]) == (404, "run_not_found")
    assert wait_for_end(flow_env, running_id, step=host.poll_triggers_once).status is RunStatus.CANCELLED
