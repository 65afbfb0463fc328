"""Where spans go, read from the standard settings; what a job's environment gets; activities' spans."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace

from orchestrations import telemetry
from orchestrations.telemetry import Destination, TelemetryConfigError, TelemetrySettings


@pytest.mark.parametrize(
    ("environ", "destination"),
    [
        ({}, Destination.NONE),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, Destination.OTLP),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, Destination.OTLP),
        ({"OTEL_TRACES_EXPORTER": "console"}, Destination.CONSOLE),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, Destination.NONE),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h"},
         Destination.AZURE_MONITOR),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x", "OTEL_SDK_DISABLED": "true"},
         Destination.NONE),
    ],
    ids=["nothing", "otlp", "otlp traces", "console", "otlp turned off", "app insights first", "sdk disabled"],
)
def test_the_destination_follows_the_standard_settings(environ: dict[str, str], destination: Destination) -> None:
    assert TelemetrySettings.from_environ(environ).destination is destination


def test_entra_auth_is_read_from_the_authentication_string_the_functions_host_documents() -> None:
    settings = TelemetrySettings.from_environ({
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=0f9e7c1a-1111-2222-3333-444455556666;Authorization=AAD",
    })

    assert (settings.aad, settings.aad_client_id) == (True, "0f9e7c1a-1111-2222-3333-444455556666")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
         "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
          "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Key"},
         "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
    ],
)
def test_a_setting_it_cannot_use_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(TelemetryConfigError, match=named):
        TelemetrySettings.from_environ(environ)


def test_a_job_gets_the_otel_settings_but_not_headers_that_may_hold_a_key_nor_the_service_name() -> None:
    settings = TelemetrySettings.from_environ({
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=secret",
        "OTEL_SERVICE_NAME": "pacta-functions", "OTEL_BSP_SCHEDULE_DELAY": "100", "PATH": "/usr/bin",
    })

    assert dict(settings.forwarded) == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                                        "OTEL_BSP_SCHEDULE_DELAY": "100"}


def test_a_job_started_inside_a_span_gets_that_span_as_its_traceparent(recorded_spans: Any) -> None:
    with telemetry.run_span("start_job", "run-0123456789") as span:
        env = telemetry.job_environment()

    context = span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert env[telemetry.TRACEPARENT_ENV] == expected
    assert telemetry.traceparent_from_environ(env) == env[telemetry.TRACEPARENT_ENV]


def test_a_run_span_is_a_child_of_the_given_traceparent_and_carries_the_run_id(recorded_spans: Any) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    with telemetry.run_span("check_job", "run-0123456789", traceparent=parent, attributes={"pacta.x": None}):
        pass

    (span,) = recorded_spans.get_finished_spans()
    assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (
        "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert dict(span.attributes) == {telemetry.RUN_ID_ATTRIBUTE: "run-0123456789"}


def test_a_failure_inside_a_run_span_marks_it_as_an_error(recorded_spans: Any) -> None:
    with pytest.raises(RuntimeError), telemetry.run_span("stop_job", "run-0123456789"):
        raise RuntimeError("broke")

    (span,) = recorded_spans.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR


@pytest.mark.parametrize("value", ["", "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01"])
def test_no_traceparent_is_taken_from_a_missing_or_invalid_variable(value: str) -> None:
    assert telemetry.traceparent_from_environ({telemetry.TRACEPARENT_ENV: value}) is None
