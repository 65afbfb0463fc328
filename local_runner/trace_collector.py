"""A loopback OpenTelemetry collector for local runs: OTLP over HTTP in, one JSON line per span out.

The local host starts one when no telemetry destination is configured (no `OTEL_EXPORTER_OTLP_ENDPOINT`,
no `APPLICATIONINSIGHTS_CONNECTION_STRING`), points the app at it, and the app passes the same endpoint
to each job: the host, the runner process and the runner's container (host networking) all export here.
`python -m local_runner trace RUN_ID` then shows a run's trace from `.local/traces/spans.jsonl`.

It speaks the OTLP/HTTP binary protobuf encoding of `/v1/traces` (and takes `/v1/metrics` and `/v1/logs`,
keeping only their count): what opentelemetry-exporter-otlp-proto-http sends. It is no substitute for a
real collector; point `OTEL_EXPORTER_OTLP_ENDPOINT` at one to use it instead.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

# OTLP/HTTP's largest accepted body here: an export batch is 512 spans by default (OTEL_BSP_MAX_EXPORT_BATCH_SIZE).
MAX_BODY_BYTES = 16 * 1024 * 1024
_STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


@dataclass(frozen=True)
class CollectedSpan:
    """One span as received: ids in hex, times in Unix nanoseconds."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def run_id(self) -> str | None:
        value = self.attributes.get("pacta.run.id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class CollectedMetric:
    """One metric data point as received: its name, attributes and value (sum, or count for histograms)."""

    name: str
    service: str
    attributes: dict[str, Any]
    value: float


def spans_of(request: ExportTraceServiceRequest) -> Iterator[CollectedSpan]:
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield CollectedSpan(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(), parent_span_id=span.parent_span_id.hex(),
                    name=span.name, service=service, start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano, status=_STATUS_CODES.get(span.status.code, "unset"),
                    attributes=_attributes(span.attributes),
                    events=[{"name": event.name, "attributes": _attributes(event.attributes)} for event in span.events],
                )


def metrics_of(request: ExportMetricsServiceRequest) -> Iterator[CollectedMetric]:
    for resource_metrics in request.resource_metrics:
        service = str(_attributes(resource_metrics.resource.attributes).get("service.name", ""))
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind == "sum":
                    points = [(p.attributes, p.as_double or p.as_int) for p in metric.sum.data_points]
                elif kind == "histogram":
                    points = [(p.attributes, p.count) for p in metric.histogram.data_points]
                elif kind == "gauge":
                    points = [(p.attributes, p.as_double or p.as_int) for p in metric.gauge.data_points]
                else:
                    continue
                for attributes, value in points:
                    yield CollectedMetric(metric.name, service, _attributes(attributes), float(value))


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


class TraceCollector:
    """Receives OTLP/HTTP on a loopback port; keeps the spans and metric points, and appends spans to `spans_file`."""

    def __init__(self, *, port: int = 0, spans_file: Path | None = None) -> None:
        self.spans: list[CollectedSpan] = []
        self.metrics: list[CollectedMetric] = []
        self.requests: Counter[str] = Counter()
        self._spans_file = spans_file
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="trace-collector", daemon=True)

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces and /v1/metrics)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> TraceCollector:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> TraceCollector:
        """Serve (once; starting a started collector does nothing)."""
        if self._thread.ident is not None:
            return self
        if self._spans_file is not None:
            self._spans_file.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def spans_of_run(self, run_id: str) -> list[CollectedSpan]:
        """Every span of the traces in which some span names this run, oldest first."""
        with self._lock:
            spans = list(self.spans)
        traces = {span.trace_id for span in spans if span.run_id == run_id}
        return sorted((span for span in spans if span.trace_id in traces), key=lambda span: span.start_ns)

    def receive(self, path: str, body: bytes) -> bytes:
        self.requests[path] += 1
        if path == "/v1/traces":
            spans = list(spans_of(ExportTraceServiceRequest.FromString(body)))
            with self._lock:
                self.spans.extend(spans)
                if self._spans_file is not None:
                    with self._spans_file.open("a", encoding="utf-8") as output:
                        output.writelines(json.dumps(asdict(span)) + "\n" for span in spans)
            return ExportTraceServiceResponse().SerializeToString()
        if path == "/v1/metrics":
            points = list(metrics_of(ExportMetricsServiceRequest.FromString(body)))
            with self._lock:
                self.metrics.extend(points)
            return ExportMetricsServiceResponse().SerializeToString()
        if path == "/v1/logs":
            return ExportLogsServiceResponse().SerializeToString()
        raise LookupError(path)


def read_spans(spans_file: Path) -> list[CollectedSpan]:
    """The spans a collector wrote to `spans_file` (none if it does not exist)."""
    if not spans_file.exists():
        return []
    with spans_file.open(encoding="utf-8") as lines:
        return [CollectedSpan(**json.loads(line)) for line in lines if line.strip()]


def _handler(collector: TraceCollector) -> type[BaseHTTPRequestHandler]:
    class OtlpHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(413, b"")
                return
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                answer = collector.receive(self.path, body)
            except LookupError:
                self._answer(404, b"")
                return
            except Exception:  # a body that is not OTLP protobuf
                self._answer(400, b"")
                return
            self._answer(200, answer)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per export would drown the host's own log

    return OtlpHandler


# Settings that name a destination of their own: then the local host starts no collector.
_DESTINATION_SETTINGS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "OTEL_SDK_DISABLED",
)
# The spans file is started afresh (the old one kept as .1) once it is this large.
MAX_SPANS_FILE_BYTES = 64 * 1024 * 1024


def start_local_collector(spans_file: Path, environ: MutableMapping[str, str]) -> TraceCollector | None:
    """A collector for the local host, pointed to by OTEL_EXPORTER_OTLP_ENDPOINT in `environ` (os.environ:
    the app reads it when it loads); None when the settings already name a destination."""
    if any(environ.get(name, "").strip() for name in _DESTINATION_SETTINGS):
        return None
    if spans_file.exists() and spans_file.stat().st_size > MAX_SPANS_FILE_BYTES:
        spans_file.replace(spans_file.with_suffix(spans_file.suffix + ".1"))
    collector = TraceCollector(spans_file=spans_file).start()
    environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.endpoint
    return collector
