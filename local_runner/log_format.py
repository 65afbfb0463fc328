"""Log output for the local host: one line per record, with the run id when the record carries one."""

from __future__ import annotations

import logging

# The Azure SDKs log every HTTP request at INFO; locally that drowns the app's own lines.
QUIET_LOGGERS = ("azure", "aiohttp.access", "urllib3")


class RunIdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        run_id = getattr(record, "run_id", None)
        return f"{line} [run_id={run_id}]" if run_id else line


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RunIdFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
