"""The `process` job backend: the runner as a local subprocess, for machines without Docker.

Selected with `RUNNER_BACKEND=process` (or automatically under the emulator when no Docker engine
answers). Each run lives in `<PROCESS_BACKEND_WORK_DIR>/<run_id>/` (default `.local/process-runs`):

    pid          the supervisor's pid, which is also the run's process group
    spec.json    the JobSpec, secret environment values redacted
    output.log   the job's stdout and stderr
    exit_code    written when the job ends (128+N when signal N killed it)
    stopped      written by `stop` before it signals the job
    boot_id      the machine's boot id at start, to tell a reboot from a running job

The job runs under `local_runner/process_supervisor.py` in a new session, so it outlives the host
that started it: a restarted host finds it again through its directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from local_runner import process_supervisor
from local_runner.job_output import LOG_MAX_BYTES, LOG_TAIL_BYTES, capped_log, describe_exit, log_tail
from local_runner.process_supervisor import EXIT_CODE_FILE, PID_FILE, write_atomically
from orchestrations.backends import EndLooks
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, JobStatus, RunnerEnv
from orchestrations.errors import BackendError, ExecutionNotFoundError
from orchestrations.settings import AppSettings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

SPEC_FILE = "spec.json"
LOG_FILE = "output.log"
STOPPED_FILE = "stopped"
BOOT_ID_FILE = "boot_id"

# The runner sends its failure event and uploads its log when asked to stop; 10 s is what Docker's
# `docker stop` gives a container by default, and ample for one queue message and one upload.
STOP_GRACE_SECONDS = 10.0
# After SIGKILL the kernel ends the group within milliseconds; this only bounds a stuck exit.
KILL_WAIT_SECONDS = 5.0
# A concurrent start of the same run writes its pid file within a Python start-up or two.
START_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05

VANISHED = "process vanished without recording an exit code"
INTERRUPTED_START = "the start of this run was interrupted before its process was recorded"
REDACTED = "<redacted>"

# The parent's environment is not passed on (it may hold secrets): only these, then spec.env.
BASE_ENV_NAMES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "SYSTEMROOT",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
)
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|CONNECTION_?STRING|(^|_)KEY($|_)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"accountkey=|sharedaccesssignature=|[?&]sig=", re.IGNORECASE)
_PROC = Path("/proc")


def create_backend(settings: AppSettings) -> ProcessJobBackend:
    """The factory `RUNNER_BACKEND=process` loads; a relative work dir is under the project root."""
    work_dir = Path(settings.process_work_dir)
    if not work_dir.is_absolute():
        work_dir = PROJECT_ROOT / work_dir
    return ProcessJobBackend(work_dir, project_root=PROJECT_ROOT)


class ProcessJobBackend:
    """Runs `python -m runner` (or `spec.command`) as a local process, one directory per run.

    The command is `spec.command + spec.args`, or `[python, "-m", "runner"] + spec.args` when
    `spec.command` is empty, run in `project_root` with a minimal environment (PATH, HOME, locale,
    CA bundles, `PYTHONPATH=project_root`) plus `spec.env`; nothing else of the caller's
    environment is inherited.

    `spec.cpu` and `spec.memory` are not enforced: RLIMIT_AS would count virtual memory, which
    Python and the Azure SDKs reserve far beyond what they use, and failing runs that way would be
    worse than running unlimited on a developer's machine. Use the docker backend for limits.

    Safe to call from several threads and processes: `os.mkdir` of the run directory is the lock
    that makes `start` idempotent.
    """

    name = "process"
    # A look reads a few /proc entries (tens of microseconds). A runner exits about 0.1 s after its message, and
    # its slot stays idle until a look sees it gone: every 10 ms at first, the pauses growing a tenth each time.
    end_looks = EndLooks(first_pause=0.01, growth=1.1, longest_pause=2.0)

    def __init__(
        self,
        work_dir: Path,
        *,
        python: str = sys.executable,
        project_root: Path,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
    ) -> None:
        if stop_grace_seconds < 0:
            raise ValueError(f"stop_grace_seconds must be >= 0, not {stop_grace_seconds}")
        self.work_dir = Path(work_dir).resolve()
        self._python = python
        self._project_root = Path(project_root).resolve()
        self._stop_grace_seconds = stop_grace_seconds
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    # --- the JobBackend protocol ---

    def start(self, spec: JobSpec) -> ExecutionRef:
        """Start the run's process, or return the ref of the one already started for this run."""
        run_id = spec.run_id
        if not _RUN_ID.match(run_id):
            raise BackendError(
                "invalid_run_id",
                f"run id {run_id!r} cannot name a directory: use letters, digits, '.', '_', '-'.",
            )
        ref = ExecutionRef(backend=self.name, name=run_id)
        run_dir = self.work_dir / run_id
        self.work_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + START_WAIT_SECONDS
        while not _make_dir(run_dir):
            # Another start of this run holds the directory: wait for its pid, or for it to give up.
            if not _wait_for(
                lambda: (run_dir / PID_FILE).exists() or not run_dir.exists(), deadline
            ):
                logger.warning(
                    "Run %s has a directory but no pid after %ss: %s",
                    run_id,
                    START_WAIT_SECONDS,
                    INTERRUPTED_START,
                    extra=_ids(ref),
                )
                return ref
            if run_dir.exists():
                logger.info("Run %s was started already: %s", run_id, ref, extra=_ids(ref))
                return ref
            # The other start failed and removed its directory: try again.
        self._launch(spec, run_dir, ref)
        return ref

    def status(self, ref: ExecutionRef) -> JobStatus:
        """Running while its process group lives; then its recorded exit code, or vanished."""
        run_dir = self._run_dir(ref)
        exit_code = _read_int(run_dir / EXIT_CODE_FILE)
        if exit_code is None:
            pid = _read_int(run_dir / PID_FILE)
            if pid is None:
                return JobStatus(
                    state=JobState.FAILED, detail=INTERRUPTED_START, log_tail=_log_tail(run_dir)
                )
            if self._group_alive(run_dir, pid):
                return JobStatus(state=JobState.RUNNING, detail=f"pid {pid}")
            # It may have recorded its code between our first look and its end.
            exit_code = _read_int(run_dir / EXIT_CODE_FILE)
            if exit_code is None:
                return JobStatus(
                    state=JobState.FAILED, detail=VANISHED, log_tail=_log_tail(run_dir)
                )
        self._reap()
        return JobStatus(
            state=JobState.SUCCEEDED if exit_code == 0 else JobState.FAILED,
            exit_code=exit_code,
            detail=describe_exit(exit_code, stopped=(run_dir / STOPPED_FILE).exists()),
            log_tail=_log_tail(run_dir),
        )

    def stop(self, ref: ExecutionRef) -> JobStatus:
        """SIGTERM the process group, SIGKILL it after the grace period; return the final status."""
        current = self.status(ref)
        if current.has_ended:
            return current
        run_dir = self._run_dir(ref)
        pid = _read_int(run_dir / PID_FILE)
        assert pid is not None  # status() reported running, which needs a pid
        write_atomically(run_dir / STOPPED_FILE, f"{time.time():.3f}\n")
        logger.info("Stopping %s (process group %s)", ref, pid, extra=_ids(ref))
        last_signal = signal.SIGTERM
        self._signal_group(pid, last_signal)
        if not self._wait_until_ended(run_dir, pid, self._stop_grace_seconds):
            logger.warning(
                "%s did not end within %ss of SIGTERM: sending SIGKILL",
                ref,
                self._stop_grace_seconds,
                extra=_ids(ref),
            )
            last_signal = signal.SIGKILL
            self._signal_group(pid, last_signal)
            if not self._wait_until_ended(run_dir, pid, KILL_WAIT_SECONDS):
                logger.warning(
                    "%s still has processes %ss after SIGKILL",
                    ref,
                    KILL_WAIT_SECONDS,
                    extra=_ids(ref),
                )
                return self.status(ref)
        if not (run_dir / EXIT_CODE_FILE).exists():
            # The supervisor died with its job (SIGKILL, or SIGTERM before its handler was set).
            write_atomically(run_dir / EXIT_CODE_FILE, f"{128 + last_signal}\n")
        return self.status(ref)

    def logs(self, ref: ExecutionRef) -> str:
        """The job's output (stdout and stderr); only the last MiB of a longer log."""
        run_dir = self._run_dir(ref)
        data, omitted = _read_end(run_dir / LOG_FILE, LOG_MAX_BYTES)
        return capped_log(data, omitted=omitted, source=str(run_dir / LOG_FILE))

    # --- starting ---

    def _launch(self, spec: JobSpec, run_dir: Path, ref: ExecutionRef) -> None:
        command = (
            list(spec.command) + list(spec.args)
            if spec.command
            else [self._python, "-m", "runner", *spec.args]
        )
        supervisor = [self._python, "-I", process_supervisor.__file__, str(run_dir), "--", *command]
        try:
            write_atomically(run_dir / SPEC_FILE, _redacted_spec_json(spec))
            boot_id = _boot_id()
            if boot_id is not None:
                write_atomically(run_dir / BOOT_ID_FILE, boot_id + "\n")
            with open(run_dir / LOG_FILE, "ab") as log:
                child = subprocess.Popen(
                    supervisor,
                    cwd=self._project_root,
                    env=self._job_environment(spec),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise BackendError(
                "process_start_failed",
                f"The process backend could not start run {spec.run_id} with {self._python}: "
                f"{exc}. Check that this Python exists and PROCESS_BACKEND_WORK_DIR is writable.",
            ) from exc
        write_atomically(run_dir / PID_FILE, f"{child.pid}\n")
        self._reap()  # the children that ended since the last look, whether or not anyone asks about them
        with self._lock:
            self._children[spec.run_id] = child
        logger.info(
            "Started %s: pid %s, log %s", ref, child.pid, run_dir / LOG_FILE, extra=_ids(ref)
        )
        logger.debug("%s runs %s", ref, command, extra=_ids(ref))

    def _job_environment(self, spec: JobSpec) -> dict[str, str]:
        env = {name: os.environ[name] for name in BASE_ENV_NAMES if name in os.environ}
        env.setdefault("LANG", "C.UTF-8")
        env["PYTHONUNBUFFERED"] = "1"  # so output.log follows the job as it runs
        env.update(spec.env)
        extra_path = spec.env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(self._project_root) + (
            os.pathsep + extra_path if extra_path else ""
        )
        return env

    # --- finding and watching a run ---

    def _run_dir(self, ref: ExecutionRef) -> Path:
        if ref.backend != self.name:
            raise BackendError(
                "wrong_backend", f"{ref} is not a process backend ref; expected 'process:<run_id>'."
            )
        run_dir = self.work_dir / ref.name
        if not _RUN_ID.match(ref.name) or not run_dir.is_dir():
            raise ExecutionNotFoundError(str(ref), where=str(self.work_dir))
        return run_dir

    def _reap(self) -> None:
        """Collect our own children that have exited, so none lingers as a zombie (or in `_children`).

        All of them, not only the run asked about: a run whose end the host learns from its completion message
        is never asked about again, and its entry would stay for the backend's life, one per such run.
        """
        with self._lock:
            for run_id, child in list(self._children.items()):
                if child.poll() is not None:
                    del self._children[run_id]

    def _group_alive(self, run_dir: Path, pgid: int) -> bool:
        self._reap()
        try:
            recorded_boot: str | None = (run_dir / BOOT_ID_FILE).read_text().strip()
        except FileNotFoundError:
            recorded_boot = None
        if recorded_boot is not None and recorded_boot != _boot_id():
            return False  # the machine rebooted since the start
        return _process_group_alive(pgid, run_dir)

    def _wait_until_ended(self, run_dir: Path, pgid: int, timeout: float) -> bool:
        return _wait_for(
            lambda: not self._group_alive(run_dir, pgid), time.monotonic() + timeout
        )

    @staticmethod
    def _signal_group(pgid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(pgid, signum)


def _ids(ref: ExecutionRef) -> dict[str, str]:
    return {"run_id": ref.name, "execution_ref": str(ref)}


def _make_dir(path: Path) -> bool:
    """Create `path`, or return False if it exists: the lock that makes `start` idempotent."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return False
    return True


def _wait_for(condition: Callable[[], bool], deadline: float) -> bool:
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(POLL_SECONDS)
    return True


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _read_end(path: Path, limit: int) -> tuple[bytes, int]:
    """The last `limit` bytes of a file, and how many bytes came before them."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - limit))
            data = file.read(limit)
    except FileNotFoundError:
        return b"", 0
    return data, max(0, size - limit)


def _log_tail(run_dir: Path) -> str | None:
    data, omitted = _read_end(run_dir / LOG_FILE, LOG_TAIL_BYTES)
    return log_tail(data, truncated=omitted > 0)


def _is_secret(name: str, value: str) -> bool:
    return (
        name == RunnerEnv.CALLBACK_TOKEN.value
        or _SECRET_NAME.search(name) is not None
        or _SECRET_VALUE.search(value) is not None
    )


def _redacted_spec_json(spec: JobSpec) -> str:
    env = {name: REDACTED if _is_secret(name, value) else value for name, value in spec.env.items()}
    return spec.model_copy(update={"env": env}).model_dump_json(indent=2) + "\n"


def _boot_id() -> str | None:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


def _process_group_alive(pgid: int, run_dir: Path) -> bool:
    """Whether a live (not zombie) process remains in the run's group, still ours."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    if not _PROC.is_dir():
        return True  # no /proc (macOS): trust the signal probe
    try:
        leader = (_PROC / str(pgid) / "cmdline").read_bytes()
    except OSError:
        leader = b""  # the leader is gone; its job may live on in the group
    if leader and os.fsencode(str(run_dir)) + b"\0" not in leader:
        return False  # the pid now belongs to another program: ours ended long ago
    # The leader alive in its group answers at once; only once it has ended are the other processes looked for
    # (a scan of every process's stat, about 1 ms, at each of a run's status checks).
    if _member_state(_PROC / str(pgid) / "stat", pgid) not in (None, "Z"):
        return True
    return any(state != "Z" for state in _group_member_states(pgid))


def _group_member_states(pgid: int) -> list[str]:
    """The states (R, S, Z, ...) of the processes in a group, from /proc/<pid>/stat."""
    states = (_member_state(stat, pgid) for stat in _PROC.glob("[0-9]*/stat"))
    return [state for state in states if state is not None]


def _member_state(stat: Path, pgid: int) -> str | None:
    """The state of the process whose /proc stat file this is, if it is in the group `pgid`."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # ended while we looked
    return fields[0] if len(fields) > 2 and fields[2] == str(pgid) else None
