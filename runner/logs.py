"""The runner's logging: every record to stderr and to the log file uploaded as `runner.log`.

Records carry the run id. A redacting formatter replaces the callback token and the storage
credentials wherever they appear, a second line of defence behind never logging them at all.
"""

from __future__ import annotations

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


class _RedactingFormatter(logging.Formatter):
    """Formats in UTC; replaces each secret with `***` in the finished line, tracebacks included."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__(LOG_FORMAT, DATE_FORMAT)
        self.converter = time.gmtime
        # Longest first, so a connection string is replaced whole before its account key is.
        self._secrets = sorted((secret for secret in secrets if secret), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class _RunIdFilter(logging.Filter):
    """Puts the run id on every record, so each line of the log says which run wrote it."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self._run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self._run_id
        return True


@contextmanager
def run_logging(log_path: Path | None, *, run_id: str, secrets: Sequence[str]) -> Iterator[None]:
    """Send all logging to stderr and (when given) `log_path` while the block runs."""
    formatter = _RedactingFormatter(secrets)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
    root = logging.getLogger()
    previous_level = root.level
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_RunIdFilter(run_id))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(AZURE_SDK_LOG_LEVEL)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(previous_level)


def flush_logs() -> None:
    """Flush every handler, so the log file is complete before it is uploaded."""
    for handler in logging.getLogger().handlers:
        handler.flush()
