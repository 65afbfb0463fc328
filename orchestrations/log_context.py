"""Which run a log line is about, and how the app's lines look: JSON lines in Azure, text locally (`LOG_FORMAT`).

`run_scope` also makes the block a span of the run's trace (orchestrations/telemetry.py).

Code that works on a run says so once, `with run_context(run_id):` (and `bind_execution_ref(ref)` when the
job's ref becomes known); `RunContextFilter` then copies the run id and the execution ref onto every record
logged inside, from any module, in async code and in threads started by `asyncio.to_thread` (both carry the
context along). The ids live in a `ContextVar`: each asyncio task has its own copy, and the block resets it on
exit, so a pool thread that runs the next invocation starts without the last one's ids.

`install` puts the filter on every handler of the root logger and the chosen formatter on the Python
worker's handler (in Azure: the worker sends each line to the host and Application Insights, so a JSON line
arrives there once, with the worker's invocation id beside it) or on the local host's own handler. A bare
process without any handler gets one on stdout. The formatters also blank the app's secrets, a second line
of defence behind never logging them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span

from orchestrations import telemetry

if TYPE_CHECKING:
    from orchestrations.settings import AppSettings

# The runner's variable for LOG_FORMAT (runner/environment.py reads it; it belongs in contracts.RunnerEnv).
RUNNER_LOG_FORMAT_VAR = "RUNNER_LOG_FORMAT"
# The name of the local host's handler (local_runner/log_format.py), whose format `install` sets.
HANDLER_NAME = "pacta-runs"
# Modules of the Python worker's logging handlers (the gRPC one that feeds the host and Application Insights).
_WORKER_MODULES = ("azure_functions_worker", "azure_functions_runtime", "proxy_worker")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
REDACTED = "***"
_ACCOUNT_KEY = re.compile(r"AccountKey=([^;]+)", re.IGNORECASE)
# zap's level names (PACTA's Go services logged with zap), so one query reads both.
_LEVELS = {"WARNING": "warn", "CRITICAL": "fatal"}


class LogFormat(StrEnum):
    """How log lines look: one JSON object per line, or a line of text for people."""

    JSON = "json"
    TEXT = "text"


@dataclass(frozen=True)
class RunIds:
    run_id: str
    execution_ref: str | None = None


_current: ContextVar[RunIds | None] = ContextVar("run_ids", default=None)


@contextmanager
def run_context(run_id: str, execution_ref: str | None = None) -> Iterator[None]:
    """Every record logged inside the block carries `run_id` (and `execution_ref`, when given or bound)."""
    token = _current.set(RunIds(run_id, execution_ref))
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def run_scope(
    span_name: str, run_id: str, *, traceparent: str | None, execution_ref: str | None = None,
    **attributes: str | int | None,
) -> Iterator[Span]:
    """Work on one run: its log lines carry the run's ids, and it is a span of the run's trace."""
    span_attributes = {telemetry.EXECUTION_REF_ATTRIBUTE: execution_ref, **attributes}
    with run_context(run_id, execution_ref), telemetry.run_span(
        span_name, run_id, traceparent=traceparent, attributes=span_attributes
    ) as span:
        yield span


def bind_execution_ref(execution_ref: str) -> None:
    """Add the job's ref to the run's context once it is known; the enclosing `run_context` ends it."""
    trace.get_current_span().set_attribute(telemetry.EXECUTION_REF_ATTRIBUTE, execution_ref)
    ids = _current.get()
    if ids is not None:
        _current.set(replace(ids, execution_ref=execution_ref))


def current_ids() -> RunIds | None:
    return _current.get()


class RunContextFilter(logging.Filter):
    """Copies the run id and the execution ref of the current context onto each record.

    Ids a call site gave in `extra` win; a record about another run (`extra={"run_id": other}`) does not get
    this run's execution ref.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _current.get()
        if ids is None:
            return True
        run_id = getattr(record, "run_id", None)
        if run_id is None:
            record.run_id = run_id = ids.run_id
        if ids.execution_ref and getattr(record, "execution_ref", None) is None and run_id == ids.run_id:
            record.execution_ref = ids.execution_ref
        return True


class _Redacting:
    def __init__(self, secrets: Sequence[str]) -> None:
        # Longest first, so a connection string is replaced whole before its account key is.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message> [run_id=... execution_ref=...]`, for people."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self._redacting = _Redacting(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{key}={value}" for key in ("run_id", "execution_ref") if (value := getattr(record, key, None))]
        return self._redacting.redact(f"{line} [{' '.join(ids)}]" if ids else line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts` (UTC, RFC 3339), `level`, `logger`, `msg`, `run_id`, `execution_ref`,
    and `stacktrace` when the record has an exception."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self._redacting = _Redacting(secrets)

    def format(self, record: logging.LogRecord) -> str:
        redact = self._redacting.redact
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": _LEVELS.get(record.levelname, record.levelname.lower()),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in ("run_id", "execution_ref"):
            if value := getattr(record, key, None):
                fields[key] = str(value)
        if record.exc_info:
            fields["stacktrace"] = redact(self.formatException(record.exc_info))
        return json.dumps(fields, ensure_ascii=False, default=str)


def formatter_for(log_format: LogFormat, secrets: Sequence[str] = ()) -> logging.Formatter:
    return JsonFormatter(secrets) if log_format is LogFormat.JSON else TextFormatter(secrets)


def install(log_format: LogFormat, *, secrets: Sequence[str] = ()) -> None:
    """Run ids on every handler's records; `log_format` on the worker's handler or the local host's.

    Safe to call again (the in-process host imports the app afresh at each start): the filter is added once.
    The worker's handler is kept, never replaced: it is what carries the lines to the host in Azure.
    """
    root = logging.getLogger()
    formatter = formatter_for(log_format, secrets)
    if not root.handlers:  # a bare process (a script importing the app): nothing would print at all
        stdout = logging.StreamHandler(sys.stdout)
        stdout.set_name(HANDLER_NAME)
        root.addHandler(stdout)
    for handler in root.handlers:
        if not any(isinstance(existing, RunContextFilter) for existing in handler.filters):
            handler.addFilter(RunContextFilter())
        if handler.get_name() == HANDLER_NAME or type(handler).__module__.startswith(_WORKER_MODULES):
            handler.setFormatter(formatter)


def secrets_of(settings: AppSettings) -> list[str]:
    """The app's values no line may show: the callback token key, the connection strings and their keys."""
    values = [settings.callback_token_key.get_secret_value()]
    for connection in (settings.storage_connection, settings.runner_storage_connection):
        if connection:
            values.append(connection)
            values.extend(_ACCOUNT_KEY.findall(connection))
    return values
