"""Run one of PACTA's commands: its output goes line by line into the runner's log (PACTA's #185:
its Go runner let R print to the container's stdout, where nobody kept it), its last lines are
kept for the error message, and a SIGTERM to the runner is passed on to it.

stdout and stderr share one pipe, so the lines keep the order the command wrote them in (R's
logger and `stop()` write to stderr, `print` to stdout; two pipes read apart would interleave them
at random). The command runs in its own session, so stopping it stops what it started too
(Rscript's pandoc).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from runner.text import shorten

logger = logging.getLogger(__name__)
# The command's own lines, under a name of their own so they stand out in runner.log.
output_logger = logging.getLogger("runner.command")

# Lines kept for the error message; it travels in the completion message, the whole output is in the log.
TAIL_LINES = 30
TAIL_CHARS = 3000
# A longer line is logged in pieces: R can print a whole data frame on one line.
MAX_LINE_BYTES = 16 * 1024
# When the runner is stopped, the command gets this long to end before it is killed; the runner's own
# report must still fit in the 10 s a container gets between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 3.0
# After the command ends, how long its output may still be draining (a child it left running can
# hold the pipes open; the run must not wait for it).
DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class CommandResult:
    """How the command ended: `exit_code` as a shell reports it (128+N for signal N), the signal's
    name when one ended it, and its last lines."""

    exit_code: int
    tail: str
    killed_by: str | None = None


class CommandNotStartedError(Exception):
    """The command could not be started at all (missing, not executable)."""


def run_command(command: Sequence[str], *, env: Mapping[str, str]) -> CommandResult:
    """Run `command` to its end with exactly `env`; never raises for a non-zero exit."""
    try:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        raise CommandNotStartedError(f"{error.strerror or error}: {command[0]}") from error
    logger.info("command started (pid %d)", process.pid)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    assert process.stdout is not None
    # A thread reads, so the main thread can wait for the process itself and take SIGTERM there.
    reader = threading.Thread(target=_pump, args=(process.stdout, tail), name="command-output", daemon=True)
    reader.start()
    try:
        returncode = process.wait()
    except BaseException:  # the runner was stopped (TerminatedError) or interrupted: stop the command too
        _stop(process)
        raise
    finally:
        reader.join(timeout=DRAIN_SECONDS)
    if returncode < 0:
        killed_by = _signal_name(-returncode)
        logger.info("command ended by %s", killed_by)
        return CommandResult(128 - returncode, _tail_text(tail), killed_by)
    logger.info("command ended with exit code %d", returncode)
    return CommandResult(returncode, _tail_text(tail))


def _pump(stream: IO[bytes], tail: deque[str]) -> None:
    """Log each line of `stream` and keep the last ones in `tail`."""
    with stream:
        for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            output_logger.info("| %s", line)
            tail.append(line)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL after the grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, DRAIN_SECONDS)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        logger.warning("sent %s to the command (pid %d)", sig.name, process.pid)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail_text(tail: deque[str]) -> str:
    return shorten("\n".join(tail), TAIL_CHARS, keep="end")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
