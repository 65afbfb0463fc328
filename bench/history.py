"""Durable history per generation with the default settings: events and bytes, against the goal of 60 events.

    .venv/bin/python bench/history.py [--job-seconds 40]      (`make bench` runs it)

One run on the in-process host and the process backend, whose job sleeps `--job-seconds` without reporting,
with STATUS_CHECK_INTERVAL_SECONDS=1 and every other setting at its default (STATUS_CHECKS_PER_GENERATION
included). The history of the run's current generation is sampled every 50 ms; a generation ends when it
continues as new (the history starts again). Prints the largest generation in events and in JSON bytes, the
number of generations, and the ratio to the goal. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _local_app import local_app_settings  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from local_runner.azurite import AzuriteEndpoints, free_port, start_azurite  # noqa: E402
from local_runner.host.host import LocalHost  # noqa: E402
from orchestrations import runtime  # noqa: E402
from orchestrations.intake import derive_run_id  # noqa: E402
from orchestrations.settings import AppSettings  # noqa: E402

GOAL_EVENTS = 60
SAMPLE = ROOT / "samples" / "sample_portfolio.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-seconds", type=int, default=40)
    job_seconds = parser.parse_args().job_seconds
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
        azurite = start_azurite(endpoints, log_path=work / "azurite.log")
        os.environ.update(local_app_settings(endpoints, work / "runs", hub_prefix="History") | {
            "STATUS_CHECK_INTERVAL_SECONDS": "1", "OTEL_SDK_DISABLED": "true",
            "RUNNER_COMMAND": json.dumps(["python", "-c", f"import time; time.sleep({job_seconds})"]),
        })
        runtime.reset()
        checks_per_generation = AppSettings.model_fields["status_checks_per_generation"].default
        try:
            with LocalHost(ROOT, poll_interval=0.1) as host:
                container = BlobServiceClient.from_connection_string(endpoints.connection_string).create_container(
                    "uploads")
                blob = container.upload_blob("parse_portfolio/history.csv", SAMPLE.read_bytes())
                run_id = derive_run_id("uploads", "parse_portfolio/history.csv", blob.get_blob_properties().etag)
                generations: list[tuple[int, int]] = []
                largest, last_len = (0, 0), 0
                deadline = time.monotonic() + job_seconds + 120
                while time.monotonic() < deadline:
                    status = host.engine.get_status(run_id, show_input=False)
                    history = host.engine.get_history(run_id) if status else []
                    if len(history) < last_len:
                        generations.append(largest)
                        largest = (0, 0)
                    largest = max(largest, (len(history), len(json.dumps(history, default=str))))
                    last_len = len(history)
                    if status and status["runtimeStatus"] in {"Completed", "Failed", "Terminated"}:
                        break
                    time.sleep(0.05)
                generations.append(largest)
        finally:
            azurite.terminate()
            azurite.wait(timeout=30)
    events, size = max(generations)
    print(f"history per generation, defaults (STATUS_CHECKS_PER_GENERATION={checks_per_generation}), "
          f"job of {job_seconds} s, a check every 1 s")
    print(f"  generations: {len(generations)} of {', '.join(str(count) for count, _ in generations)} events; "
          f"largest: {events} events, {size / 1024:.1f} KiB of JSON")
    print(f"  goal: <= {GOAL_EVENTS} events per generation; ratio {events / GOAL_EVENTS:.2f} "
          f"({'met' if events <= GOAL_EVENTS else 'NOT met'})")


if __name__ == "__main__":
    main()
