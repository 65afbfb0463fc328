"""The local trace collector takes what the OTLP/HTTP exporter sends; `trace RUN_ID` shows a run's spans."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from typer.testing import CliRunner

from local_runner import cli, services
from local_runner.trace_collector import TraceCollector, read_spans, start_local_collector

RUN_ID = "run-0123456789abcdef"


def export_a_run(endpoint: str) -> None:
    """Two spans of one run, sent by the real exporter (its own provider: the process's global one is untouched)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "pacta-functions"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("intake", attributes={"pacta.run.id": RUN_ID}), tracer.start_as_current_span(
        "start_job", attributes={"pacta.run.id": RUN_ID, "attempt": 1}
    ):
        pass
    provider.shutdown()


def test_spans_from_the_exporter_are_kept_and_written_one_json_line_each(tmp_path: Path) -> None:
    spans_file = tmp_path / "traces" / "spans.jsonl"
    with TraceCollector(spans_file=spans_file) as collector:
        export_a_run(collector.endpoint)

        spans = collector.spans_of_run(RUN_ID)

    assert [span.name for span in spans] == ["intake", "start_job"]
    assert spans[1].parent_span_id == spans[0].span_id and spans[0].trace_id == spans[1].trace_id
    assert spans[1].attributes == {"pacta.run.id": RUN_ID, "attempt": 1}
    assert {span.service for span in spans} == {"pacta-functions"}
    assert read_spans(spans_file) == collector.spans


def test_a_body_that_is_not_otlp_is_refused_and_an_unknown_path_is_not_found() -> None:
    with TraceCollector() as collector:
        bad = requests.post(f"{collector.endpoint}/v1/traces", data=b"\xff\x00not protobuf", timeout=5)
        unknown = requests.post(f"{collector.endpoint}/v1/other", data=b"", timeout=5)

    assert (bad.status_code, unknown.status_code) == (400, 404)
    assert collector.spans == []


def test_no_local_collector_when_the_settings_name_a_destination(tmp_path: Path) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}

    assert start_local_collector(tmp_path / "spans.jsonl", environ) is None
    assert environ == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


def test_the_trace_command_shows_the_run_s_spans_under_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    environ: dict[str, str] = {}
    collector = start_local_collector(spans_file, environ)
    assert collector is not None
    with collector:
        export_a_run(environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    monkeypatch.setattr(services, "SPANS_FILE", spans_file)

    shown = CliRunner().invoke(cli.cli, ["trace", RUN_ID[:10]], env={"COLUMNS": "200"})
    missing = CliRunner().invoke(cli.cli, ["trace", "run-ffff"])

    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert RUN_ID in lines[0]
    assert lines[1].lstrip("└─ ").startswith("intake") and "start_job" in lines[2] and lines[2].index("start_job") > 4
    assert missing.exit_code == 1 and "no spans" in missing.output
