"""One trace per run: the host (its own process), the runner process, the runner's container or a Container Apps
execution (the loopback Resource Manager's, started from the job template the app sends), all exporting OTLP to a
loopback collector, give spans that share one trace id from the upload's intake to the record.

The host runs as `python -m local_runner host` (as under `make up`) with OTEL_EXPORTER_OTLP_ENDPOINT naming
the test's collector; it passes the endpoint and the start span's TRACEPARENT to the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runner.azurite import free_port
from local_runner.trace_collector import CollectedSpan, TraceCollector, read_spans
from orchestrations.contracts import RunStatus
from orchestrations.telemetry import RUN_ID_ATTRIBUTE
from tests.conftest import wait_for
from tests.flow.conftest import FlowEnv, HostProcess, wait_for_end
from tests.flow.test_structured_logs import secrets_of_the_run

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

# The run's spans in the order they start: the app's (intake, activities, completion) and the runner's.
APP_SPANS = ["intake", "start_job", "completion", "record_outcome"]
RUNNER_SPANS = ["runner", "runner.download", "runner.task", "runner.upload", "runner.result", "runner.complete"]
IN_ORDER = ["intake", "start_job", "runner", "runner.download", "runner.task", "runner.upload", "runner.result",
            "runner.complete", "completion", "record_outcome"]


@pytest.fixture
def collector() -> Iterator[TraceCollector]:
    with TraceCollector() as running:
        yield running


def run_with_tracing(
    flow_env: FlowEnv, hosts: list[HostProcess], collector: TraceCollector, fixtures_dir: Path, tmp_path: Path,
) -> tuple[str, list[CollectedSpan]]:
    env = {
        **flow_env.env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, not 5 s
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    hosts.append(HostProcess(env, free_port(), tmp_path / "host.log"))
    run_id = flow_env.upload("parse_portfolio/traced.csv", (fixtures_dir / "simple.csv").read_bytes())
    record = wait_for_end(flow_env, run_id, timeout=120)
    assert record.status is RunStatus.SUCCEEDED, record.error
    spans = wait_for(
        lambda: (spans := collector.spans_of_run(run_id)) and "record_outcome" in names(spans) and spans,
        what="the record_outcome span", timeout=30,
    )
    return run_id, spans


def names(spans: list[CollectedSpan]) -> list[str]:
    return [span.name for span in spans]


def in_order_of_first_start(spans: list[CollectedSpan], wanted: list[str]) -> list[str]:
    """The wanted names, in the order their first span started."""
    first: dict[str, int] = {}
    for span in spans:
        first.setdefault(span.name, span.start_ns)
    return sorted((name for name in wanted if name in first), key=first.__getitem__)


@pytest.mark.parametrize("backend", ["process", "docker", "aca"], indirect=True)
def test_a_run_is_one_trace_from_the_upload_to_the_record(
    flow_env: FlowEnv, hosts: list[HostProcess], collector: TraceCollector, fixtures_dir: Path, tmp_path: Path,
) -> None:
    run_id, spans = run_with_tracing(flow_env, hosts, collector, fixtures_dir, tmp_path)

    assert {span.trace_id for span in spans} == {spans[0].trace_id}
    assert set(APP_SPANS + RUNNER_SPANS) <= set(names(spans))
    assert in_order_of_first_start(spans, IN_ORDER) == IN_ORDER
    by_id = {span.span_id: span for span in spans}
    roots = [span for span in spans if span.parent_span_id not in by_id]
    assert names(roots) == ["intake"]
    assert {span.service for span in spans if span.name in APP_SPANS} == {"pacta-functions"}
    assert {span.service for span in spans if span.name in RUNNER_SPANS} == {"pacta-runner"}
    # The runner's root hangs off the start span: TRACEPARENT crossed into the job's environment.
    runner_root = next(span for span in spans if span.name == "runner")
    assert by_id[runner_root.parent_span_id].name == "start_job"
    assert all(span.attributes.get(RUN_ID_ATTRIBUTE) == run_id for span in spans if span.name in IN_ORDER)
    assert next(span for span in spans if span.name == "record_outcome").attributes["pacta.run.status"] == "succeeded"


@pytest.mark.parametrize("backend", ["docker"], indirect=True)
def test_no_span_or_metric_carries_a_secret_and_the_run_metrics_are_exported(
    flow_env: FlowEnv, hosts: list[HostProcess], collector: TraceCollector, fixtures_dir: Path, tmp_path: Path,
) -> None:
    run_id, spans = run_with_tracing(flow_env, hosts, collector, fixtures_dir, tmp_path)
    wait_for(lambda: {"pacta.runs.ended", "pacta.run.duration"} <= {m.name for m in collector.metrics},
             what="the run metrics", timeout=30)

    texts = [repr(span.attributes) + repr(span.events) for span in spans]
    texts += [repr(metric.attributes) for metric in collector.metrics]
    for secret in secrets_of_the_run(flow_env, run_id):
        assert not [text for text in texts if secret in text]
    started = {m.name for m in collector.metrics if m.attributes.get("pacta.task.type") == "parse_portfolio"}
    assert {"pacta.runs.started", "pacta.run.queued", "pacta.job.start_latency"} <= started
    ended = [m for m in collector.metrics if m.name == "pacta.runs.ended"]
    assert {m.attributes.get("pacta.run.status") for m in ended} == {"succeeded"}


def test_a_host_stopped_just_after_a_run_hands_its_own_collector_every_span_first(
    flow_env: FlowEnv, hosts: list[HostProcess], fixtures_dir: Path, tmp_path: Path,
) -> None:
    # `make up`'s host: no destination in the settings, so it runs its own collector; stopped as `make down` stops
    # it, moments after a run, while the app's spans still wait in their batch (5 s by default).
    spans_file, log = tmp_path / "spans.jsonl", tmp_path / "host.log"
    hosts.append(HostProcess(flow_env.env, free_port(), log, spans_file=spans_file))
    run_id = flow_env.upload("parse_portfolio/stopped-after.csv", (fixtures_dir / "simple.csv").read_bytes())
    assert wait_for_end(flow_env, run_id, timeout=120).status is RunStatus.SUCCEEDED

    hosts[0].stop()

    spans = [span for span in read_spans(spans_file) if span.run_id == run_id]
    assert set(APP_SPANS + RUNNER_SPANS) <= set(names(spans)), names(spans)
    assert "Failed to export" not in log.read_text(errors="replace")
