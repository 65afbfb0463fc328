"""An instance as the extension's HTTP API shows it (HttpApiHandler.cs, StatusResponsePayload)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from local_runner.host.durable.history import EventType, HistoryEvent
from local_runner.host.durable.state import InstanceState

# .NET `ToString("s") + "Z"`: seconds precision.
STATUS_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Fields that carry payloads; the extension shows them only with showHistoryOutput.
_OUTPUT_FIELDS = ("Result", "Input")


def to_status(
    state: InstanceState,
    *,
    show_history: bool = False,
    show_history_output: bool = False,
    show_input: bool = True,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": state.name,
        "instanceId": state.instance_id,
        "runtimeStatus": state.status.value,
        "input": _parse(state.input) if show_input else None,
        "customStatus": state.custom_status,
        "output": state.output,
        "createdTime": format_status_time(state.created_time),
        "lastUpdatedTime": format_status_time(state.last_updated_time),
    }
    if show_history:
        status["historyEvents"] = history_events(state.history, show_output=show_history_output)
    return status


def format_status_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STATUS_TIME_FORMAT)


def history_events(events: list[HistoryEvent], *, show_output: bool) -> list[dict[str, Any]]:
    """The history without episode markers, event types by name, payloads only when asked for."""
    shown = []
    for event in events:
        if event["EventType"] in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED):
            continue
        item = {k: v for k, v in event.items() if k != "IsPlayed"}
        item["EventType"] = _type_name(event["EventType"])
        for key in _OUTPUT_FIELDS:
            if key in item:
                item[key] = _parse(item[key]) if show_output else None
        shown.append(item)
    return shown


def _type_name(code: int) -> str:
    try:
        return "".join(part.title() for part in EventType(code).name.split("_"))
    except ValueError:
        return str(code)


def _parse(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
