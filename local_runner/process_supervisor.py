"""Runs one job for the process backend and records how it ended.

    python -I local_runner/process_supervisor.py <run_dir> -- <command> [args...]

The process backend starts this in a new session, so it and the job outlive whoever started them.
It writes `<run_dir>/pid` (its own pid, which is also the job's process group), runs the command
with the environment, working directory and output it was given, then writes `<run_dir>/exit_code`
atomically: the job's code, or 128+N when a signal N killed it (137 for SIGKILL), as Docker reports.
It survives SIGTERM/SIGINT/SIGHUP sent to the group, so a graceful stop still records the job's
code; SIGKILL ends it too, and then the backend records the code itself.

Standard library only, and run with `-I`: the job's environment (PYTHONPATH, ...) must not change
how the supervisor itself starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

PID_FILE = "pid"
EXIT_CODE_FILE = "exit_code"

# The shell's conventions for a command that cannot be run.
COMMAND_NOT_FOUND = 127
COMMAND_NOT_EXECUTABLE = 126


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see either nothing or all of it."""
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def exit_code_of(returncode: int) -> int:
    """A `Popen.returncode` as shells and Docker report it: -N (signal N) becomes 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _keep_running(signum: int, frame: FrameType | None) -> None:
    # The signal reached the whole process group; the job handles it, we wait to record its code.
    # A handler rather than SIG_IGN: an ignored signal would stay ignored in the job after exec.
    pass


def run(run_dir: Path, command: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _keep_running)
    write_atomically(run_dir / PID_FILE, f"{os.getpid()}\n")
    code = COMMAND_NOT_EXECUTABLE
    try:
        job = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        code = exit_code_of(job.wait())
    except FileNotFoundError as exc:
        print(f"process backend: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        code = COMMAND_NOT_FOUND
    except OSError as exc:
        print(f"process backend: cannot run {command[0]!r}: {exc}", file=sys.stderr)
    finally:
        write_atomically(run_dir / EXIT_CODE_FILE, f"{code}\n")
    return code


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: process_supervisor.py <run_dir> -- <command> [args...]", file=sys.stderr)
        return 2
    return run(Path(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
