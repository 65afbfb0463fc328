"""Durable history per generation with the default settings: events and bytes, against the goal of 60 events.

    .venv/bin/python bench/history.py [--generations 1 3]      (`make bench` runs it)

One run for each of `--generations` on the in-process host and the process backend, with
STATUS_CHECK_INTERVAL_SECONDS=1 and every setting the history depends on at its default
(STATUS_CHECKS_PER_GENERATION included). Its job reports nothing and ends at the moment that makes a generation
largest: between the last two status checks of the given generation, so the last check of that generation finds
it ended, and the grace wait, the result read, the slot's release and the record all land in that generation (a
job found ended at an earlier check leaves 8 events fewer per check; a fixed-length job ends at whichever check
its length happens to meet, so a 40 s one showed 52 or 60 from run to run). Generation 1, the one that starts the
job, also holds the look for a slot and the start, in place of one check. COMPLETION_GRACE_SECONDS=1: the grace
wait is one timer, two events, whatever its length, and the default's 30 s would only lengthen the bench. The
history of the run's current generation is sampled every 50 ms; a generation ends when it continues as new (the
history starts again). Prints the largest generation in events and in JSON bytes, the number of generations, and
the ratio to the goal. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _local_app import local_app_settings  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from local_runner.azurite import AzuriteEndpoints, free_port, start_azurite  # noqa: E402
from local_runner.host.durable.history import EventType  # noqa: E402
from local_runner.host.host import LocalHost  # noqa: E402
from orchestrations import runtime  # noqa: E402
from orchestrations.intake import derive_run_id  # noqa: E402
from orchestrations.settings import AppSettings  # noqa: E402

GOAL_EVENTS = 60
SAMPLE = ROOT / "samples" / "sample_portfolio.csv"
# How long the job waits for its cue at most, so a bench cut short leaves no job behind for long.
JOB_LIMIT_SECONDS = 300


def generation_of(status: dict[str, Any] | None) -> int | None:
    """The generation the run's custom status names while it watches its job (None before and after)."""
    custom = (status or {}).get("customStatus")
    if isinstance(custom, str):
        custom = json.loads(custom)
    return custom.get("generation") if isinstance(custom, dict) else None


CHECKS_PER_GENERATION: int = AppSettings.model_fields["status_checks_per_generation"].default


def checks_in(generation: int) -> int:
    """Status checks a generation makes: one fewer in the generation that starts the job (run_task's
    `start_counts_as_check`), whose look for a slot and start take one check's place."""
    return max(1, CHECKS_PER_GENERATION - 1) if generation == 1 else CHECKS_PER_GENERATION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, nargs="+", default=[1, 3],
                        help="the generations whose last check ends the job, one run each")
    for target in parser.parse_args().generations:
        measure(target)


def measure(target: int) -> None:
    """One run whose job ends just before generation `target`'s last check; prints its generations' sizes."""
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        cue = work / "end-the-job"
        job = (f"import os, time\nlimit = time.monotonic() + {JOB_LIMIT_SECONDS}\n"
               f"while not os.path.exists({str(cue)!r}) and time.monotonic() < limit:\n    time.sleep(0.02)")
        endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
        azurite = start_azurite(endpoints, log_path=work / "azurite.log")
        os.environ.update(local_app_settings(endpoints, work / "runs", hub_prefix="History") | {
            "STATUS_CHECK_INTERVAL_SECONDS": "1", "COMPLETION_GRACE_SECONDS": "1", "OTEL_SDK_DISABLED": "true",
            "RUNNER_COMMAND": json.dumps(["python", "-c", job]),
        })
        runtime.reset()
        try:
            with LocalHost(ROOT, poll_interval=0.1) as host:
                container = BlobServiceClient.from_connection_string(endpoints.connection_string).create_container(
                    "uploads")
                blob = container.upload_blob("parse_portfolio/history.csv", SAMPLE.read_bytes())
                run_id = derive_run_id("uploads", "parse_portfolio/history.csv", blob.get_blob_properties().etag)
                generations: list[tuple[int, int]] = []
                largest, last_len = (0, 0), 0
                job_began: float | None = None
                job_seconds: float | None = None  # until the job gets its cue
                deadline = time.monotonic() + JOB_LIMIT_SECONDS + 60
                while time.monotonic() < deadline:
                    status = host.engine.get_status(run_id, show_input=False)
                    history = host.engine.get_history(run_id) if status else []
                    if len(history) < last_len:
                        generations.append(largest)
                        largest = (0, 0)
                    largest = max(largest, (len(history), len(json.dumps(history, default=str))))
                    last_len = len(history)
                    generation = generation_of(status)
                    if generation is not None and job_began is None:
                        job_began = time.monotonic()
                    # Each check's answer creates the next check's timer: with as many timers as checks, the
                    # last one is pending, and the job ends within 0.1 s, well before it fires 1 s on.
                    timers = sum(1 for event in history if event["EventType"] == EventType.TIMER_CREATED)
                    if generation == target and timers >= checks_in(target) and not cue.exists():
                        cue.touch()
                        job_seconds = time.monotonic() - (job_began or time.monotonic())
                    if status and status["runtimeStatus"] in {"Completed", "Failed", "Terminated"}:
                        break
                    time.sleep(0.05)
                generations.append(largest)
        finally:
            cue.touch()  # the job ends whatever happened
            azurite.terminate()
            azurite.wait(timeout=30)
    events, size = max(generations)
    print(f"history per generation, defaults (STATUS_CHECKS_PER_GENERATION={CHECKS_PER_GENERATION}), "
          f"job of {job_seconds or 0:.0f} s, a check every 1 s")
    if job_seconds is None:
        print(f"  (the run ended before generation {target}'s last check: not the largest a generation gets)")
    else:
        print(f"  (the job ended just before generation {target}'s last check, which makes a generation largest)")
    print(f"  generations: {len(generations)} of {', '.join(str(count) for count, _ in generations)} events; "
          f"largest: {events} events, {size / 1024:.1f} KiB of JSON")
    print(f"  goal: <= {GOAL_EVENTS} events per generation; ratio {events / GOAL_EVENTS:.2f} "
          f"({'met' if events <= GOAL_EVENTS else 'NOT met'})")


if __name__ == "__main__":
    main()
