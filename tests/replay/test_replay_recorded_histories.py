"""Replay what ran: recorded `run_task` histories must replay to the same end with today's code.

A change to the orchestrator that would break instances already in flight (a renamed activity, a new
timer before an old one) fails here before it ships. The histories were recorded by
tests/flow/test_orchestrator_branches.py with RECORD_HISTORIES=1; record them again after a
deliberate, versioned change to the orchestrator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from local_runner.host.durable.actions import effects_of, invoke
from local_runner.host.durable.history import as_played, orchestration_request
from orchestrations.run_task import run_task

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))
EXECUTION_STARTED, EXECUTION_COMPLETED, TASK_SCHEDULED, TASK_FAILED = 0, 1, 4, 6


def recorded(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    history = json.loads(path.read_text())
    return history, next(event for event in history if event["EventType"] == EXECUTION_STARTED)


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
def test_recorded_history_replays_to_the_recorded_outcome(path: Path) -> None:
    history, started = recorded(path)
    completed = next(event for event in history if event["EventType"] == EXECUTION_COMPLETED)
    request = orchestration_request(
        as_played(history), instance_id=started["OrchestrationInstance"]["InstanceId"], input_json=started["Input"]
    )

    reply = invoke(df.Orchestrator.create(run_task), request)

    assert reply.error is None
    assert reply.is_done
    assert reply.output == json.loads(completed["Result"])
    assert [effect.name for effect, _ in effects_of(reply.actions) if effect.name] == activities_asked_for(history)


def activities_asked_for(history: list[dict[str, Any]]) -> list[str]:
    """Scheduled activities, less the re-schedules the host made to retry a failed attempt."""
    names = {event["EventId"]: event["Name"] for event in history if event["EventType"] == TASK_SCHEDULED}
    asked, retrying = [], None
    for event in history:
        if event["EventType"] == TASK_FAILED:
            retrying = names[event["TaskScheduledId"]]
        elif event["EventType"] == TASK_SCHEDULED:
            if event["Name"] == retrying:
                retrying = None
                continue
            asked.append(event["Name"])
    return asked


def test_histories_were_recorded() -> None:
    assert {path.stem for path in HISTORIES} >= {
        "succeeded_on_event", "failed_without_report", "timed_out_after_continue_as_new",
        "start_failed_after_retries",
    }
