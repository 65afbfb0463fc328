"""What the local backends say about a job's end and output: exit descriptions, log tails, capped logs.

Shared by the process and docker backends so that a run reads the same whichever ran it: the same
`detail` for the same exit code, the same `log_tail` size, the same cap on `logs`.
"""

from __future__ import annotations

import signal

# JobStatus.log_tail: enough lines to show a traceback, small enough for an activity payload.
LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 4 * 1024
# JobBackend.logs: the end of a longer log is what explains how a job ended.
LOG_MAX_BYTES = 1024 * 1024

STOPPED = "stopped"


def describe_exit(exit_code: int, *, stopped: bool = False) -> str:
    """`detail` for an ended job: `stopped`, `killed by signal 9 (SIGKILL)`, `exited with code 3`."""
    if exit_code != 0 and stopped:
        return STOPPED
    if 128 < exit_code <= 128 + 64:
        number = exit_code - 128
        try:
            return f"killed by signal {number} ({signal.Signals(number).name})"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with code {exit_code}"


def log_tail(data: bytes, *, truncated: bool = False) -> str | None:
    """The last `LOG_TAIL_LINES` lines of a job's output, at most `LOG_TAIL_BYTES`; None when empty.

    `data` is the end of the output; `truncated` says whether anything came before it, in which
    case its first line may be partial and is dropped.
    """
    if len(data) > LOG_TAIL_BYTES:
        data = data[-LOG_TAIL_BYTES:]
        truncated = True
    text = data.decode("utf-8", errors="replace")
    if truncated and "\n" in text:
        text = text.split("\n", 1)[1]
    lines = text.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(lines) or None


def capped_log(data: bytes, *, omitted: int = 0, source: str) -> str:
    """A job's output for `logs`: the last `LOG_MAX_BYTES` of it, saying how much came before."""
    if len(data) > LOG_MAX_BYTES:
        omitted += len(data) - LOG_MAX_BYTES
        data = data[-LOG_MAX_BYTES:]
    text = data.decode("utf-8", errors="replace")
    if omitted:
        return f"[{omitted} earlier bytes of {source} omitted]\n" + text
    return text
