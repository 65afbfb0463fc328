"""One function call in a forked child process, its result (or exception) sent back pickled.

The parser splits large files across two processes (the machines it runs on have two cores and
Python runs one thread at a time). A fork shares the parent's memory copy-on-write, so the child
needs nothing sent to it; it writes large results to files and returns where they are. The child
ends with `os._exit`, so nothing of the parent (atexit handlers, buffered output) runs twice.
Where fork is not available, `fork_call` runs the function at once in the calling process.

A second process pays only when it gets a core of its own: `spare_core()` tells the callers
whether to split the work at all.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from collections.abc import Callable
from typing import Generic, TypeVar

from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule

T = TypeVar("T")

# Split work over two processes only while, over the last 10 s, runnable tasks waited for a CPU less
# than this share of the time (Linux PSI, `some avg10`). With every core busy the second process
# just adds its own cost. On this project's 2-core machine, shared with others, 1,000,000 rows took
# (medians of 5-7 whole processes) 2.40 s in one process against 3.55 s in two at a pressure of
# 72-79%, but 1.38 s against 1.00 s at 24-42%, and 1.50 s against 1.31 s at 6-28% (2026-12-06).
MAX_CPU_PRESSURE = 50.0
# The container's own CPU pressure (cgroup v2), else the machine's.
PRESSURE_FILES = ("/sys/fs/cgroup/cpu.pressure", "/proc/pressure/cpu")
# A CPU quota: cgroup v2 `cpu.max` ("max 100000" or "150000 100000"), else v1's two files.
QUOTA_FILES = ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def spare_core() -> bool:
    """Whether a second process would likely run on a core of its own: at least two cores usable
    (CPU affinity and any cgroup quota), and little waiting for CPUs (MAX_CPU_PRESSURE; where the
    kernel has no pressure figures, a 1-minute load average half a core below the cores)."""
    cores = usable_cores()
    if cores < 2:
        return False
    for path in PRESSURE_FILES:
        pressure = cpu_pressure(_read(path))
        if pressure is not None:
            return pressure < MAX_CPU_PRESSURE
    return os.getloadavg()[0] < cores - 0.5


def usable_cores() -> float:
    """The cores this process may use: its affinity, capped by a cgroup CPU quota if there is one."""
    cores = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    v2, v1_quota, v1_period = (_read(path) for path in QUOTA_FILES)
    if v2 is None and v1_quota and v1_period:
        v2 = f"{v1_quota} {v1_period}"
    quota = cpu_quota(v2)
    return min(cores, quota) if quota is not None else cores


def cpu_quota(text: str | None) -> float | None:
    """Cores from a quota and a period ("150000 100000" -> 1.5); None for no quota ("max", -1)."""
    try:
        quota, period = (text or "").split()
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except ValueError:
        return None


def cpu_pressure(text: str | None) -> float | None:
    """`some avg10` of a PSI file ("some avg10=1.50 avg60=..."), in percent; None if absent."""
    for line in (text or "").splitlines():
        if line.startswith("some "):
            fields = dict(field.split("=", 1) for field in line.split()[1:] if "=" in field)
            with contextlib.suppress(KeyError, ValueError):
                return float(fields["avg10"])
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as file:
            return file.read(4096)
    except (OSError, UnicodeDecodeError):
        return None


class Pending(Generic[T]):
    """A call under way in a child process (or already done, without fork)."""

    def __init__(self, pid: int | None, reader: int | None, done: tuple[bool, object] | None = None) -> None:
        self._pid, self._reader, self._done = pid, reader, done

    def result(self) -> T:
        """The function's return value; its exception is raised here."""
        if self._done is None:
            self._done = self._collect()
        ok, value = self._done
        if not ok:
            raise value  # type: ignore[misc]  # an exception pickled by the child
        return value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Stop the child if it still runs (the parent is failing); idempotent."""
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._wait()
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None

    def _collect(self) -> tuple[bool, object]:
        import pickle  # only where a process was forked (a parse in one process never needs it)

        assert self._reader is not None
        chunks = []
        while chunk := os.read(self._reader, 1 << 20):  # read to the end before waiting: no deadlock
            chunks.append(chunk)
        os.close(self._reader)
        self._reader = None
        status = self._wait()
        if not chunks:
            return False, PortfolioFileError(Rule.INTERNAL, f"a worker process of the parser died ({status})")
        loaded: tuple[bool, object] = pickle.loads(b"".join(chunks))
        return loaded

    def _wait(self) -> str:
        if self._pid is None:
            return "already ended"
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        return f"wait status {status}"


def fork_call(function: Callable[..., T], *args: object) -> Pending[T]:
    """Start `function(*args)` in a child process.

    SIGTERM is held back while forking. Python runs a signal's handler at the next bytecode, and
    during a fork that is in the at-fork hooks (logging's among them), where an exception is only
    printed: the runner's stop would be lost. Held back, it arrives once the child is known, and a
    stop then ends the child too."""
    if not hasattr(os, "fork") or not hasattr(signal, "pthread_sigmask"):
        return _here(function, *args)
    reader, writer = os.pipe()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        os.close(reader)
        os.close(writer)
        return _here(function, *args)
    if pid:
        os.close(writer)
        pending: Pending[T] = Pending(pid, reader)
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a SIGTERM held back is handled here
        except BaseException:
            pending.cancel()
            raise
        return pending
    try:  # the child from here on: whatever happens, it ends here
        os.close(reader)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # killed with the parent, not turned into an error
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        # The collector would walk (and so write to, copying them) the pages shared with the parent;
        # the child is short-lived and makes no cycles worth collecting.
        gc.disable()
        _send(writer, function, args)
    finally:
        os._exit(0)


def _send(writer: int, function: Callable[..., object], args: tuple[object, ...]) -> None:
    import pickle

    try:
        outcome: tuple[bool, object] = (True, function(*args))
    except BaseException as error:  # everything goes back to the parent, which decides
        outcome = (False, error)
    try:
        payload = pickle.dumps(outcome)
    except Exception as error:  # an unpicklable result or exception
        payload = pickle.dumps((False, PortfolioFileError(Rule.INTERNAL, f"a worker process failed ({error!r})")))
    view = memoryview(payload)
    while view:
        view = view[os.write(writer, view) :]


def _here(function: Callable[..., T], *args: object) -> Pending[T]:
    try:
        return Pending(None, None, (True, function(*args)))
    except Exception as error:
        return Pending(None, None, (False, error))
