"""A release waits for its job to end looking at the backend's own pace (`JobBackend.end_looks`)."""

from __future__ import annotations

from itertools import islice

import pytest

from local_runner.process_backend import ProcessJobBackend
from orchestrations import concurrency
from orchestrations.backends import REMOTE_END_LOOKS, EndLooks
from orchestrations.contracts import ExecutionRef, JobState, JobStatus


class EndingBackend:
    """Says `running` for the first `looks_running` looks, then `succeeded`."""

    name = "ending"

    def __init__(self, end_looks: EndLooks, looks_running: int) -> None:
        self.end_looks = end_looks
        self._left = looks_running
        self.looks = 0

    def status(self, ref: ExecutionRef) -> JobStatus:
        self.looks += 1
        if self._left > 0:
            self._left -= 1
            return JobStatus(state=JobState.RUNNING)
        return JobStatus(state=JobState.SUCCEEDED, exit_code=0)


def test_the_pauses_start_at_the_first_and_grow_up_to_the_longest() -> None:
    looks = EndLooks(first_pause=0.5, growth=2.0, longest_pause=3.0)

    assert list(islice(looks.pauses(), 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_release_looks_at_its_job_at_the_backends_pace_until_it_has_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = EndingBackend(EndLooks(first_pause=0.001, growth=3.0, longest_pause=0.005), looks_running=4)
    slept: list[float] = []
    monkeypatch.setattr(concurrency.runtime, "backend", lambda: backend)
    monkeypatch.setattr(concurrency.time, "sleep", slept.append)

    concurrency._wait_for_job_end("run-1", ExecutionRef.parse("process:run-1"))

    assert backend.looks == 5
    assert slept == [0.001, 0.003, 0.005, 0.005]


def test_a_local_process_is_looked_at_sooner_and_more_often_than_a_remote_execution() -> None:
    local = list(islice(ProcessJobBackend.end_looks.pauses(), 10))
    remote = list(islice(REMOTE_END_LOOKS.pauses(), 10))

    assert local[0] < remote[0]
    assert sum(local) < sum(remote)
