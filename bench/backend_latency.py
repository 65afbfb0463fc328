"""Job latency of the docker backend over the process backend: a no-op job, start to ended.

    .venv/bin/python bench/backend_latency.py [--runs 10]      (`make bench` runs it)

Each run starts a job whose command is `python -c pass` through the backend itself (the same calls
the `start_job` and `check_job` activities make) and polls `status` until the job has ended. One
warm-up run per backend is not counted. Prints the median and the ratio docker / process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local_runner.docker_backend import DockerJobBackend, connect  # noqa: E402
from local_runner.process_backend import ProcessJobBackend  # noqa: E402
from orchestrations.backends import JobBackend  # noqa: E402
from orchestrations.contracts import JobSpec, TaskType  # noqa: E402

IMAGE = "pacta-runner:local"
POLL_SECONDS = 0.005


def no_op_spec() -> JobSpec:
    return JobSpec(
        run_id=f"bench-{uuid.uuid4().hex[:12]}", task_type=TaskType.PARSE_PORTFOLIO, image=IMAGE,
        command=["python", "-c", "pass"], env={}, deadline_seconds=60,
    )


def one_run(backend: JobBackend) -> float:
    spec = no_op_spec()
    started = time.perf_counter()
    ref = backend.start(spec)
    while not backend.status(ref).has_ended:
        time.sleep(POLL_SECONDS)
    return time.perf_counter() - started


def median_seconds(backend: JobBackend, runs: int) -> float:
    one_run(backend)  # warm-up: first container start, cold page cache
    return statistics.median(one_run(backend) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    labels = {"pacta-runner.bench": uuid.uuid4().hex[:8]}
    with tempfile.TemporaryDirectory() as work:
        process = median_seconds(ProcessJobBackend(Path(work), project_root=ROOT), args.runs)
    client = connect()
    docker_backend = DockerJobBackend(client, retention=1000, labels=labels)
    try:
        docker = median_seconds(docker_backend, args.runs)
    finally:
        for container in client.containers.list(all=True, filters={"label": "pacta-runner.bench"}):
            container.remove(force=True)
    print(f"no-op job, start to ended, median of {args.runs} runs (after 1 warm-up):")
    print(f"  process backend  {process * 1000:7.1f} ms")
    print(f"  docker backend   {docker * 1000:7.1f} ms  ({IMAGE})")
    print(f"  docker / process {docker / process:7.2f}x  (+{(docker - process) * 1000:.0f} ms per run)")


if __name__ == "__main__":
    main()
