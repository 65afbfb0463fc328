"""The host's one source of "now": the real clock, or one a test moves by hand.

Timers, the orchestrator's `current_utc_datetime` and trigger polling all read time through a
`Clock`, so a test can skip an hour of job deadline in a millisecond.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current UTC time (timezone-aware)."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until `event` is set or `seconds` of this clock's time pass; True if it was set."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0))


class ManualClock:
    """A clock that moves only when `advance` is called. Waiters wake when it passes their time."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._changed = threading.Condition()

    def now(self) -> datetime:
        with self._changed:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._changed:
            self._now += step
            self._changed.notify_all()
            return self._now

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._changed:
            until = self._now + timedelta(seconds=max(seconds, 0.0))
            # Wake on every advance, and on a short real-time tick so a set event is seen promptly.
            while not event.is_set() and self._now < until:
                self._changed.wait(timeout=0.02)
        return event.is_set()
