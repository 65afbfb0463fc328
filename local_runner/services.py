"""Local services the CLI brings up and down: Azurite and the in-process host as background processes.

`up` leaves them running and writes their pids under `.local/state/`; `down` stops exactly what
`up` started (never a service someone else started); `demo` starts what is missing and stops it again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from local_runner.azurite import DEFAULT_ENDPOINTS, find_azurite, start_azurite

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / ".local" / "state"
LOG_DIR = PROJECT_ROOT / ".local" / "logs"
AZURITE_DATA_DIR = PROJECT_ROOT / ".local" / "azurite-data"
# Where the local host's trace collector writes each span it receives (local_runner/trace_collector.py).
SPANS_FILE = PROJECT_ROOT / ".local" / "traces" / "spans.jsonl"
# The app's callback token key for local runs: made once, kept (owner-only) beside the local data.
CALLBACK_KEY_FILE = PROJECT_ROOT / ".local" / "callback-token-key"
CALLBACK_KEY_SETTING = "CALLBACK_TOKEN_KEY"
# How long `down` waits for a process to exit after SIGTERM before it sends SIGKILL.
STOP_GRACE_SECONDS = 10.0


def local_callback_key() -> str:
    """This checkout's callback token key (`.local/callback-token-key`), made on first use."""
    try:
        return CALLBACK_KEY_FILE.read_text().strip()
    except FileNotFoundError:
        pass
    CALLBACK_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    descriptor = os.open(CALLBACK_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key


def provide_callback_key() -> None:
    """Set CALLBACK_TOKEN_KEY from this checkout's key file unless the environment sets it already."""
    if not os.environ.get(CALLBACK_KEY_SETTING):
        os.environ[CALLBACK_KEY_SETTING] = local_callback_key()


def pid_file(service: str) -> Path:
    return STATE_DIR / f"{service}.pid"


def running_pid(service: str) -> int | None:
    """The pid `up` recorded for the service, if that process still runs."""
    path = pid_file(service)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    return pid


@contextlib.contextmanager
def azurite_for_session() -> Iterator[bool]:
    """Azurite on the default ports for the duration of the block; yields whether we started it."""
    if DEFAULT_ENDPOINTS.answers():
        yield False
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    process = start_azurite(DEFAULT_ENDPOINTS, log_path=LOG_DIR / "azurite-demo.log")
    try:
        yield True
    finally:
        process.terminate()
        process.wait(timeout=STOP_GRACE_SECONDS)


def start_background_azurite() -> str:
    """Start a persistent Azurite for `up` (data under .local/azurite-data); says what it did."""
    if DEFAULT_ENDPOINTS.answers():
        return "Azurite already answers on 127.0.0.1:10000-10002; using it."
    executable = find_azurite()
    if executable is None:
        raise FileNotFoundError("Azurite is not installed: run `make setup` (scripts/bootstrap.sh).")
    AZURITE_DATA_DIR.mkdir(parents=True, exist_ok=True)
    process = _spawn(
        "azurite",
        [executable, "--location", str(AZURITE_DATA_DIR), "--skipApiVersionCheck", "--loose",
         "--disableTelemetry", "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1"],
    )
    deadline = time.monotonic() + 30
    while not DEFAULT_ENDPOINTS.answers():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Azurite did not start; see {LOG_DIR / 'azurite.log'}")
        time.sleep(0.1)
    return f"Started Azurite (pid {process.pid}, data in {AZURITE_DATA_DIR})."


def start_background_host(port: int) -> str:
    pid = running_pid("host")
    if pid is not None:
        return f"The host already runs (pid {pid})."
    process = _spawn("host", [sys.executable, "-m", "local_runner", "host", "--port", str(port)])
    return f"Started the host (pid {process.pid}); its log is {LOG_DIR / 'host.log'}."


def stop_service(service: str) -> str:
    pid = running_pid(service)
    if pid is None:
        return f"{service}: not running (nothing started by `up`)."
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file(service).unlink(missing_ok=True)
    return f"{service}: stopped (pid {pid})."


def _spawn(service: str, command: list[str]) -> subprocess.Popen[bytes]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{service}.log", "ab") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file(service).write_text(f"{process.pid}\n")
    return process


def _alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
