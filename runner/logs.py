"""The runner's logging: every record to stderr and to the log file uploaded as `runner.log`.

Records carry the run id. On stderr (the job's console, which Container Apps sends to Log Analytics)
lines are JSON or text, as `RUNNER_LOG_FORMAT` says; the JSON has the app's fields (`ts`, `level`,
`logger`, `msg`, `run_id`, `stacktrace`: orchestrations/log_context.py, not in this image). `runner.log`
is always text: people read it, through the runs API, while the console's copy is the one queried.
Both formatters replace the callback token and the storage credentials wherever they appear, a
second line of defence behind never logging them at all. Records that OpenTelemetry exports as they are
(to Application Insights: runner/tracing.py) get the same treatment, through `_RedactingRelay`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [run %(run_id)s] %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
REDACTED = "***"
# The Azure SDK logs every request's headers at INFO; its warnings (retries, failures) matter.
AZURE_SDK_LOG_LEVEL = logging.WARNING


# zap's level names, as PACTA's Go runner wrote them and the app writes them.
_LEVELS = {"WARNING": "warn", "CRITICAL": "fatal"}


class _RedactingFormatter(logging.Formatter):
    """Formats in UTC; replaces each secret with `***` in the finished line, tracebacks included."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__(LOG_FORMAT, DATE_FORMAT)
        self.converter = time.gmtime
        # Longest first, so a connection string is replaced whole before its account key is.
        self._secrets = sorted((secret for secret in secrets if secret), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class _JsonFormatter(_RedactingFormatter):
    """One JSON object per line: `ts`, `level`, `logger`, `msg`, `run_id` and `stacktrace` if any."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": _LEVELS.get(record.levelname, record.levelname.lower()),
            "logger": record.name,
            "msg": self.redact(record.getMessage()),
            "run_id": getattr(record, "run_id", None),
        }
        if record.exc_info:
            fields["stacktrace"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(fields, ensure_ascii=False, default=str)


class _RedactingRelay(logging.Handler):
    """Stands in for a handler that exports records rather than lines (OpenTelemetry's `LoggingHandler`, which
    sends the message, the exception's text and the record's fields): it gets a copy with each secret replaced.

    An exception whose text holds a secret is sent as redacted text in the message instead of as an exception."""

    def __init__(self, inner: logging.Handler, secrets: Sequence[str]) -> None:
        super().__init__(inner.level)
        self.inner = inner
        self._formatter = _RedactingFormatter(secrets)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            copy = logging.makeLogRecord(vars(record))
            copy.msg, copy.args = self._formatter.redact(record.getMessage()), None
            if record.exc_info:
                text = self._formatter.formatException(record.exc_info)
                if self._formatter.redact(text) != text:
                    copy.msg = f"{copy.msg}\n{self._formatter.redact(text)}"
                    copy.exc_info, copy.exc_text = None, None
            self.inner.handle(copy)
        except Exception:
            self.handleError(record)


def _exports_records(handler: logging.Handler) -> bool:
    return type(handler).__module__.startswith("opentelemetry.")


class _RunIdFilter(logging.Filter):
    """Puts the run id on every record, so each line of the log says which run wrote it."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self._run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self._run_id
        return True


@contextmanager
def run_logging(
    log_path: Path | None, *, run_id: str, secrets: Sequence[str], console_format: str = "text"
) -> Iterator[None]:
    """Send all logging to stderr (`console_format`: `json` or `text`) and, as text, to `log_path` (when
    given) while the block runs."""
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_JsonFormatter(secrets) if console_format == "json" else _RedactingFormatter(secrets))
    handlers: list[logging.Handler] = [console]
    if log_path is not None:
        log_file = logging.FileHandler(log_path, encoding="utf-8")
        log_file.setFormatter(_RedactingFormatter(secrets))
        handlers.append(log_file)
    root = logging.getLogger()
    previous_level = root.level
    relays = [_RedactingRelay(handler, secrets) for handler in root.handlers if _exports_records(handler)]
    for relay in relays:
        root.removeHandler(relay.inner)
        root.addHandler(relay)
    for handler in [*relays, *handlers]:
        handler.addFilter(_RunIdFilter(run_id))
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(AZURE_SDK_LOG_LEVEL)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        for relay in relays:
            root.removeHandler(relay)
            root.addHandler(relay.inner)
        root.setLevel(previous_level)


def flush_logs() -> None:
    """Flush every handler, so the log file is complete before it is uploaded."""
    for handler in logging.getLogger().handlers:
        handler.flush()
