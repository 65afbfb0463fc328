"""OpenTelemetry for the app and the runner: one trace per run, and the run metrics.

A run is one trace. The intake's span is its root; its W3C `traceparent` is kept in the run's request
(the orchestration's input) and record, so every activity, the completion handler and the runner parent
their spans on it, in whatever process or container they run. The job gets the start span's context in
its environment as `TRACEPARENT` (OpenTelemetry's name for the environment carrier). The orchestrator
makes no spans: it replays.

Where the spans go is read once, at start-up, from the standard settings (`configure`):

- `APPLICATIONINSIGHTS_CONNECTION_STRING`: Azure Monitor, through `azure-monitor-opentelemetry`, with
  Entra ID auth when `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` says `Authorization=AAD[;ClientId=...]`
  (the setting the Functions host reads for the same purpose);
- otherwise OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, or
  `OTEL_TRACES_EXPORTER=otlp|console`; the SDK reads the other `OTEL_*` variables itself;
- otherwise nothing: the API's no-op tracer, and no SDK is imported.

This module is in the runner image too (runner/Dockerfile): only the standard library and
`opentelemetry-api` at import time; the SDK and exporters load when a destination is configured.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger(__name__)

# OpenTelemetry's environment carrier (spec: "Environment Variables as Context Propagation Carriers").
TRACEPARENT_ENV = "TRACEPARENT"
TRACESTATE_ENV = "TRACESTATE"
# Span attributes: the run is findable by its id in any backend's search.
RUN_ID_ATTRIBUTE = "pacta.run.id"
TASK_TYPE_ATTRIBUTE = "pacta.task.type"
EXECUTION_REF_ATTRIBUTE = "pacta.execution.ref"
STATUS_ATTRIBUTE = "pacta.run.status"
BLOB_URI_ATTRIBUTE = "pacta.blob.uri"

INSTRUMENTATION_NAME = "pacta"
_PROPAGATOR = TraceContextTextMapPropagator()
AttributeValue = str | int | float | bool
_TRUE = {"1", "true", "yes", "on"}
# The settings this module reads itself (docs/settings.md lists each); the SDK reads the other OTEL_* ones.
SETTINGS_READ = (
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)
# Not passed on to a job: its own service name, and headers that may carry an API key (a job's plain
# environment is readable by anyone who may read its executions; give the job its own, as a secret).
_NOT_FORWARDED = ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                  "OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS")
_SUPPORTED_OTLP_PROTOCOLS = {"http/protobuf"}


class TelemetryConfigError(ValueError):
    """A telemetry setting this process cannot use; the message names the setting."""


class Destination(StrEnum):
    AZURE_MONITOR = "azure_monitor"
    OTLP = "otlp"
    CONSOLE = "console"
    NONE = "none"


@dataclass(frozen=True)
class TelemetrySettings:
    """What `configure` needs, read from the environment once and checked."""

    destination: Destination
    metrics: bool
    connection_string: str | None = None
    aad_client_id: str | None = None
    aad: bool = False
    # The OTEL_* settings a job gets too, so the runner exports where the app does (locally: the same collector).
    forwarded: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TelemetrySettings:
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
            return cls(Destination.NONE, metrics=False)
        forwarded = tuple(sorted(
            (name, value) for name, value in environ.items()
            if name.startswith("OTEL_") and name not in _NOT_FORWARDED
        ))
        metrics_on = _exporter_choice(environ, "OTEL_METRICS_EXPORTER", default="otlp") != "none"
        connection_string = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
        if connection_string:
            aad, client_id = _aad_of(environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""))
            return cls(Destination.AZURE_MONITOR, metrics_on, connection_string, client_id, aad, forwarded)
        endpoint_set = any(environ.get(name, "").strip() for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        choice = _exporter_choice(environ, "OTEL_TRACES_EXPORTER", default="otlp" if endpoint_set else "none")
        if choice == "none":
            return cls(Destination.NONE, metrics=False)
        if choice == "otlp":
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
            if protocol.strip() not in _SUPPORTED_OTLP_PROTOCOLS:
                raise TelemetryConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only 'http/protobuf' is installed "
                    "(opentelemetry-exporter-otlp-proto-http); point it at the collector's HTTP port (4318)")
            return cls(Destination.OTLP, metrics_on and endpoint_set, forwarded=forwarded)
        return cls(Destination.CONSOLE, metrics=False, forwarded=forwarded)


def _exporter_choice(environ: Mapping[str, str], name: str, *, default: str) -> str:
    value = environ.get(name, "").strip().lower() or default
    if value not in {"otlp", "console", "none"}:
        raise TelemetryConfigError(f"{name}={value!r}: expected 'otlp', 'console' or 'none'")
    return value


def _aad_of(authentication: str) -> tuple[bool, str | None]:
    """`Authorization=AAD;ClientId=<id>` -> (True, id): the format the Functions host documents."""
    if not authentication.strip():
        return False, None
    parts = dict(part.split("=", 1) for part in authentication.split(";") if "=" in part)
    if parts.get("Authorization", "").strip().upper() != "AAD":
        raise TelemetryConfigError(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING: expected 'Authorization=AAD' or "
            "'Authorization=AAD;ClientId=<managed identity client id>'")
    return True, parts.get("ClientId", "").strip() or None


@dataclass
class _State:
    destination: Destination = Destination.NONE
    providers: tuple[Any, ...] = ()
    forwarded: tuple[tuple[str, str], ...] = ()


_state = _State()


def configure(service_name: str, *, environ: Mapping[str, str] | None = None, export_logs: bool = False) -> Destination:
    """Install the providers the settings ask for (once per process); returns where spans go.

    `export_logs`: also send log records through Azure Monitor (the runner: its container's lines reach
    Application Insights with their trace ids). The app leaves that to the Functions host, which already
    forwards the worker's lines.
    """
    if _state.providers or _state.destination is not Destination.NONE:
        return _state.destination
    environ_used = os.environ if environ is None else environ
    settings = TelemetrySettings.from_environ(environ_used)
    if settings.destination is Destination.NONE:
        return Destination.NONE
    _state.forwarded = settings.forwarded
    if _sdk_already_installed():
        # The Python worker configured Azure Monitor itself (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY):
        # a second pipeline would send everything twice.
        _state.destination = settings.destination
        return settings.destination
    resource = _resource(environ_used.get("OTEL_SERVICE_NAME") or service_name)
    if settings.destination is Destination.AZURE_MONITOR:
        _configure_azure_monitor(settings, resource, export_logs=export_logs)
        _state.providers = _installed_sdk_providers()
        _state.destination = settings.destination
        return settings.destination
    _state.providers = _configure_sdk(settings, resource)
    _state.destination = settings.destination
    return settings.destination


def _sdk_already_installed() -> bool:
    return type(trace.get_tracer_provider()).__module__.startswith("opentelemetry.sdk")


def _resource(service_name: str) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES; the name given here wins over a service.name in them.
    return Resource.create({SERVICE_NAME: service_name})


def _installed_sdk_providers() -> tuple[Any, ...]:
    """The SDK providers installed globally (by `configure_azure_monitor`), for `shutdown` to flush."""
    from opentelemetry import _logs

    installed = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    return tuple(provider for provider in installed if type(provider).__module__.startswith("opentelemetry.sdk"))


def _configure_azure_monitor(settings: TelemetrySettings, resource: Any, *, export_logs: bool) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    credential = None
    if settings.aad:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=settings.aad_client_id)
    configure_azure_monitor(
        connection_string=settings.connection_string,
        credential=credential,
        resource=resource,
        disable_logging=not export_logs,
        disable_metrics=not settings.metrics,
        enable_live_metrics=False,
    )


def _configure_sdk(settings: TelemetrySettings, resource: Any) -> tuple[Any, ...]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if settings.destination is Destination.OTLP:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    if not settings.metrics:
        return (tracer_provider,)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


def shutdown() -> None:
    """Export what is still buffered (a runner about to exit; a host stopping). Safe to call twice."""
    for provider in _state.providers:
        try:
            provider.shutdown()
        except Exception:  # telemetry must never turn a finished run into a failure
            logger.warning("Telemetry: shutting down %s failed", type(provider).__name__, exc_info=True)
    _state.providers = ()


def tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION_NAME)


@contextmanager
def run_span(
    name: str,
    run_id: str,
    *,
    traceparent: str | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue | None] | None = None,
    **more_attributes: AttributeValue | None,
) -> Iterator[trace.Span]:
    """A span of the run's trace: a child of `traceparent` when given, else of the current span.

    Attributes whose value is None are left out. An exception leaving the block is recorded on the span
    and marks it as an error.
    """
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    given = {**(attributes or {}), **more_attributes}
    fields = {RUN_ID_ATTRIBUTE: run_id} | {key: value for key, value in given.items() if value is not None}
    with tracer().start_as_current_span(name, context=parent, kind=kind, attributes=fields) as span:
        yield span


def current_traceparent() -> str | None:
    """The current span's context as a W3C traceparent, or None when no span is recording."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def job_environment() -> dict[str, str]:
    """What a job's environment gets for telemetry: the current span as `TRACEPARENT` (the job's spans join
    the run's trace) and the app's own OTEL_* settings, read at `configure`."""
    env = dict(_state.forwarded)
    traceparent = current_traceparent()
    if traceparent:
        env[TRACEPARENT_ENV] = traceparent
    return env


def span_context_of(traceparent: str | None) -> trace.SpanContext | None:
    """The span a traceparent names, if it is valid (for links between traces)."""
    if not traceparent:
        return None
    context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent})).get_span_context()
    return context if context.is_valid else None


def traceparent_from_environ(environ: Mapping[str, str]) -> str | None:
    """The context a job was started in (`TRACEPARENT`), if it is a valid traceparent."""
    value = environ.get(TRACEPARENT_ENV, "").strip()
    return value if span_context_of(value) else None


class RunMetrics:
    """The run metrics: runs started and ended (by status and task type), duration, queue time, start latency."""

    def __init__(self) -> None:
        meter = metrics.get_meter(INSTRUMENTATION_NAME)
        self.started = meter.create_counter("pacta.runs.started", unit="{run}", description="Jobs started.")
        self.ended = meter.create_counter("pacta.runs.ended", unit="{run}", description="Runs recorded as ended.")
        self.duration = meter.create_histogram(
            "pacta.run.duration", unit="s", description="From the upload's intake to the recorded outcome.")
        self.queued = meter.create_histogram(
            "pacta.run.queued", unit="s", description="From the upload's intake to its job's start.")
        self.start_latency = meter.create_histogram(
            "pacta.job.start_latency", unit="s", description="How long the backend took to start a job.")

    def job_started(self, task_type: str, *, queued_seconds: float, start_seconds: float) -> None:
        labels = {TASK_TYPE_ATTRIBUTE: task_type}
        self.started.add(1, labels)
        self.queued.record(max(queued_seconds, 0.0), labels)
        self.start_latency.record(max(start_seconds, 0.0), labels)

    def run_ended(self, task_type: str, status: str, *, duration_seconds: float) -> None:
        labels = {TASK_TYPE_ATTRIBUTE: task_type, STATUS_ATTRIBUTE: status}
        self.ended.add(1, labels)
        self.duration.record(max(duration_seconds, 0.0), labels)


run_metrics = RunMetrics()
