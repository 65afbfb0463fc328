"""Log output for the local host: one line per record, with the run id (and execution ref) when it has one.

The host's handler starts as text; when the app loads it follows LOG_FORMAT (`orchestrations.log_context.install`).
"""

from __future__ import annotations

import logging

from orchestrations.log_context import HANDLER_NAME, LogFormat, install

# The Azure SDKs log every HTTP request at INFO; locally that drowns the app's own lines.
QUIET_LOGGERS = ("azure", "aiohttp.access", "urllib3")


def configure_logging(level: int = logging.INFO, log_format: LogFormat = LogFormat.TEXT) -> None:
    handler = logging.StreamHandler()
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install(log_format)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
