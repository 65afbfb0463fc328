"""One function call in a forked child process, its result (or exception) sent back pickled.

The parser splits large files across two processes (the machines it runs on have two cores and
Python runs one thread at a time). A fork shares the parent's memory copy-on-write, so the child
needs nothing sent to it; it writes large results to files and returns where they are. The child
ends with `os._exit`, so nothing of the parent (atexit handlers, buffered output) runs twice.
Where fork is not available, `fork_call` runs the function at once in the calling process.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
from collections.abc import Callable
from typing import Generic, TypeVar

from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule

T = TypeVar("T")


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
