"""A burst of uploads under MAX_CONCURRENT_RUNS: time until every run is recorded, against the jobs' own time.

    .venv/bin/python bench/concurrency_cap.py [--uploads 200] [--caps 5 20]      (`make bench` runs it)

For each cap: a private in-memory Azurite, the in-process host on the process backend, `--uploads` copies
of the sample portfolio uploaded at once. Prints the wall time from the first upload until the last run is
recorded, the sum of the jobs' own times (each run's started_at to finished_at, from its record), that sum
divided by the cap (the wall time a perfect scheduler at that cap could reach if the machine had the cores),
the ratio of the two, and the most jobs seen alive at once (sampled from the backend every 20 ms).
Figures, not assertions: on 2 cores, jobs beyond two at once share the CPU, so the jobs' own times grow
with the cap.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _local_app import local_app_settings  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from local_runner.azurite import AzuriteEndpoints, free_port, start_azurite  # noqa: E402
from local_runner.host.host import LocalHost  # noqa: E402
from local_runner.process_backend import ProcessJobBackend  # noqa: E402
from orchestrations import runtime  # noqa: E402
from orchestrations.contracts import ExecutionRef, JobState, RunRecord  # noqa: E402
from orchestrations.intake import derive_run_id  # noqa: E402
from orchestrations.run_store import RunNotFoundError, RunStore  # noqa: E402

SAMPLE = ROOT / "samples" / "sample_portfolio.csv"


def live_jobs(work_dir: Path, backend: ProcessJobBackend) -> int:
    if not work_dir.exists():
        return 0
    return sum(backend.status(ExecutionRef(backend="process", name=path.name)).state is JobState.RUNNING
               for path in work_dir.iterdir())


def burst(cap: int, uploads: int, work: Path) -> tuple[float, list[RunRecord], int]:
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
    azurite = start_azurite(endpoints, log_path=work / f"azurite-{cap}.log")
    os.environ.update(local_app_settings(endpoints, work / f"runs-{cap}", hub_prefix="Cap") | {
        "MAX_CONCURRENT_RUNS": str(cap), "STATUS_CHECK_INTERVAL_SECONDS": "5",
    })
    runtime.reset()
    backend = ProcessJobBackend(work / f"runs-{cap}", project_root=ROOT)
    most = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal most
        while not done.wait(0.02):
            most = max(most, live_jobs(work / f"runs-{cap}", backend))

    try:
        with LocalHost(ROOT, poll_interval=0.1) as _host:
            blobs = BlobServiceClient.from_connection_string(endpoints.connection_string)
            uploads_container = blobs.create_container("uploads")
            content = SAMPLE.read_bytes()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()

            def upload(number: int) -> str:
                blob_name = f"parse_portfolio/bench-{number:04}.csv"
                etag = uploads_container.get_blob_client(blob_name).upload_blob(content)["etag"]
                return derive_run_id("uploads", blob_name, etag)

            with ThreadPoolExecutor(max_workers=16) as pool:
                run_ids = list(pool.map(upload, range(uploads)))
            store = RunStore.from_connection_string(endpoints.connection_string, "runs")
            records = [wait_for_record(store, run_id) for run_id in run_ids]
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
    finally:
        azurite.terminate()
        azurite.wait(timeout=10)
    return elapsed, records, most


def wait_for_record(store: RunStore, run_id: str, timeout: float = 1800.0) -> RunRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = store.get_run(run_id)
            if record.status.is_terminal:
                return record
        except RunNotFoundError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} was not recorded within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--caps", type=int, nargs="+", default=[5, 20])
    args = parser.parse_args()
    print(f"{args.uploads} uploads at once, process backend, in-process host, {os.cpu_count()} cores:")
    print(f"  {'cap':>4} {'recorded in':>12} {'sum of jobs':>12} {'sum / cap':>10} {'ratio':>6} {'most alive':>11}"
          f" {'succeeded':>10}")
    with tempfile.TemporaryDirectory() as work:
        for cap in args.caps:
            elapsed, records, most = burst(cap, args.uploads, Path(work))
            jobs = sum((record.finished_at - record.started_at).total_seconds()
                       for record in records if record.started_at and record.finished_at)
            ideal = jobs / cap
            succeeded = sum(record.status.value == "succeeded" for record in records)
            print(f"  {cap:>4} {elapsed:>10.1f} s {jobs:>10.1f} s {ideal:>8.1f} s {elapsed / ideal:>5.2f}x {most:>11}"
                  f" {succeeded:>6}/{len(records)}")


if __name__ == "__main__":
    main()
