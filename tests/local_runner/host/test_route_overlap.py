"""Routes two HTTP functions could both answer are refused at start-up, as the Functions host would not rank them.

The host maps the app's routes in the order it lists the functions and answers with the first that matches
(Azure/azure-webjobs-sdk-extensions, WebJobsRouteBuilder.Build: a RouteCollection, unsorted), so `runs/ui` next to
`runs/{run_id}` would reach either function in Azure; aiohttp alone would pick the literal one, every time.
"""

from __future__ import annotations

import pytest

from local_runner.host.functions import HTTP_TRIGGER, Binding, DurableClientBinding, IndexedFunction, Invoker
from local_runner.host.http import HttpServer, routes_overlap


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("runs/{run_id}", "runs/ui"),
        ("runs/ui", "runs/{run_id}"),
        ("runs/{run_id:regex(^run-)}", "runs/ui"),
        ("runs/{run_id}/log", "runs/ui/{run_id}"),
        ("Runs/UI", "runs/ui"),
        ("files/{*path}", "files/a/b"),
        ("files/{*path}", "files"),
        ("runs/{run_id?}", "runs"),
        ("runs/file-{name}", "runs/file-x"),
    ],
)
def test_routes_some_path_matches_both_overlap(first: str, second: str) -> None:
    assert routes_overlap(first, second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("runs/{run_id}", "ui/runs"),
        ("runs/{run_id}", "ui/runs/{run_id}"),
        ("runs/{run_id}", "runs/{run_id}/log"),
        ("runs", "runs/{run_id}"),
        ("openapi.json", "runs"),
        ("runs/{run_id}/log", "runs/{run_id}/cancel"),
    ],
)
def test_routes_no_path_matches_both_do_not_overlap(first: str, second: str) -> None:
    assert not routes_overlap(first, second)


def _Function(name: str, route: str, methods: list[str]) -> IndexedFunction:  # noqa: N802 (reads as a type)
    raw = {"type": HTTP_TRIGGER, "direction": "IN", "name": "req", "route": route, "methods": methods}
    trigger = Binding("req", HTTP_TRIGGER, "IN", raw)
    return IndexedFunction(name, trigger, (trigger,), lambda req: None)


def _server(*functions: IndexedFunction) -> HttpServer:
    """The server as the host builds it (not started: the routes are checked when it is made)."""
    return HttpServer(functions, Invoker(durable_client=lambda: DurableClientBinding("SampleHub", 7071)))


def test_a_literal_route_beside_a_parameter_route_with_the_same_method_is_refused_in_either_order() -> None:
    for functions in ([_Function("get_run", "runs/{run_id}", ["GET"]), _Function("page", "runs/ui", ["GET"])],
                      [_Function("page", "runs/ui", ["GET"]), _Function("get_run", "runs/{run_id}", ["GET"])]):
        with pytest.raises(ValueError, match=r"get_run .*page|page .*get_run") as refused:
            _server(*functions)
        assert "order it lists the functions" in str(refused.value)


def test_overlapping_routes_with_different_methods_are_served() -> None:
    _server(_Function("get_run", "runs/{run_id}", ["GET"]), _Function("act", "runs/ui", ["POST"]))


def test_a_route_without_methods_overlaps_every_method() -> None:
    with pytest.raises(ValueError, match="can both match"):
        _server(_Function("get_run", "runs/{run_id}", ["GET"]), _Function("any", "runs/ui", []))
