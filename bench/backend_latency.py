"""Docker backend latencies: a container start as finished containers pile up, and a no-op job over the process backend.

    .venv/bin/python bench/backend_latency.py [--starts 30] [--finished 1000] [--runs 10]   (`make bench` runs it)

1. Start latency: `DockerJobBackend.start` (what the `start_job` activity calls) of a no-op job, with no finished
   containers of ours, then with `--finished` finished containers of ours (made from the runner image with the
   app's labels: project, this checkout, and this bench run's), then again without them, so that a change in the
   machine's load during the bench shows rather than skews the ratio. Each job is run to its end before the next
   start, which alone is timed; a fresh backend per phase with the app's pruning settings, so the background
   prune a start begins runs during the timed starts. One warm-up start per phase is not counted. Goal: the
   median with the finished containers within 1.2x of the median without (both phases without, together).
   The finished containers are created and never started, then left until `START_WAIT_SECONDS` has passed since
   the last: to the backend a container that old and never started is an interrupted start, finished like an
   exited one (the prune lists both in the same call and removes both beyond the retention), and the engine lists
   either at the same cost (the prune's list call with 1,000 of ours: 126 ms exited, 132 ms created, 2026-12-07).
   Created, a thousand take about 4 s and the wait 31 s, where running each to its exit took 55-90 s.
2. Job latency: a no-op job (`python -c pass`), start to ended, through the docker backend and the process backend
   (the same calls the `start_job` and `check_job` activities make), median of `--runs` after a warm-up.

It removes only the containers it created (label `pacta-runner.bench=<this run's id>`); a bench cut short leaves
them to `make down`, as they carry this checkout's label (a created one once it is `START_WAIT_SECONDS` old).
Figures only, never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
from docker.errors import DockerException, NotFound  # noqa: E402

from local_runner.docker_backend import (  # noqa: E402
    PROJECT_LABEL,
    START_WAIT_SECONDS,
    DockerJobBackend,
    checkout_labels,
    connect,
)
from local_runner.process_backend import ProcessJobBackend  # noqa: E402
from orchestrations.backends import JobBackend  # noqa: E402
from orchestrations.contracts import JobSpec, TaskType  # noqa: E402
from orchestrations.settings import AppSettings  # noqa: E402

IMAGE = os.environ.get("RUNNER_IMAGE") or "pacta-runner:local"
BENCH_LABEL = "pacta-runner.bench"
POLL_SECONDS = 0.005
GOAL_RATIO = 1.2
# Containers created (and removed) at once: the engine does this work on the machine's two cores. Running them was
# what cost: about 125 ms of CPU a container start (its shim, runc, the kernel's mounts and cgroups), where a create
# costs about 6 ms; with 8 starts at once, under other heavy work, engine 20.10 once lost three shims and hung.
ENGINE_THREADS = 4
# Making and removing a thousand containers: an engine shared with other work can take minutes to answer a call.
HOUSEKEEPING_TIMEOUT_SECONDS = 600


def no_op_spec() -> JobSpec:
    return JobSpec(
        run_id=f"bench-{uuid.uuid4().hex[:12]}", task_type=TaskType.PARSE_PORTFOLIO, image=IMAGE,
        command=["python", "-c", "pass"], env={}, deadline_seconds=60,
    )


def wait_until_ended(backend: JobBackend, spec: JobSpec) -> None:
    ref = backend.start(spec)
    while not backend.status(ref).has_ended:
        time.sleep(POLL_SECONDS)


def one_run(backend: JobBackend) -> float:
    started = time.perf_counter()
    wait_until_ended(backend, no_op_spec())
    return time.perf_counter() - started


def median_seconds(backend: JobBackend, runs: int) -> float:
    one_run(backend)  # warm-up: first container start, cold page cache
    return statistics.median(one_run(backend) for _ in range(runs))


def start_latencies(make_backend: Callable[[], DockerJobBackend], starts: int) -> list[float]:
    """Seconds each `start` took, the job run to its end (untimed) before the next; one warm-up start first."""
    backend = make_backend()
    wait_until_ended(backend, no_op_spec())
    latencies = []
    for _ in range(starts):
        spec = no_op_spec()
        began = time.perf_counter()
        ref = backend.start(spec)
        latencies.append(time.perf_counter() - began)
        while not backend.status(ref).has_ended:
            time.sleep(POLL_SECONDS)
    backend.wait_for_prune()
    return latencies


def make_finished_containers(client: docker.DockerClient, count: int, labels: Mapping[str, str]) -> float:
    """Create `count` containers of `true` from the runner image with `labels`, never started, and wait until the
    backend counts them finished (interrupted starts, `START_WAIT_SECONDS` after their creation); the seconds the
    creating took."""
    began = time.perf_counter()

    def create_one(_: int) -> None:
        client.api.create_container(
            IMAGE,
            entrypoint=["true"],
            labels=dict(labels),
            host_config=client.api.create_host_config(network_mode="host"),
        )

    with ThreadPoolExecutor(ENGINE_THREADS) as pool:
        list(pool.map(create_one, range(count)))
    made_in = time.perf_counter() - began
    if count:
        # Younger, the prune takes them for starts under way: neither finished nor counted. One second's margin.
        time.sleep(START_WAIT_SECONDS + 1)
    return made_in


def remove_bench_containers(client: docker.DockerClient, bench_id: str) -> int:
    """Remove the containers this bench run made (its label value), and no other; how many.

    Fails naming the command that removes what is left when the engine did not remove them all.
    """
    selector = f"{BENCH_LABEL}={bench_id}"
    mine = client.api.containers(all=True, filters={"label": selector})

    def remove(container_id: str) -> bool:
        try:
            with contextlib.suppress(NotFound):  # pruned meanwhile
                client.api.remove_container(container_id, force=True, v=True)
            return True
        except DockerException as exc:
            print(f"could not remove container {container_id[:12]}: {exc}", file=sys.stderr)
            return False

    with ThreadPoolExecutor(ENGINE_THREADS) as pool:
        done = list(pool.map(remove, [entry["Id"] for entry in mine]))
    if not all(done):
        raise RuntimeError(
            f"{done.count(False)} of this bench's containers are left: remove them with "
            f"`docker ps -aq --filter label={selector} | xargs docker rm -f -v`"
        )
    return len(mine)


def spread(latencies: list[float]) -> str:
    ms = [value * 1000 for value in latencies]
    return f"min {min(ms):6.1f}  median {statistics.median(ms):6.1f}  max {max(ms):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=30, help="timed starts per phase of the start latency")
    parser.add_argument("--finished", type=int, default=1000, help="finished containers of ours in the second phase")
    parser.add_argument("--runs", type=int, default=10, help="runs per backend of the job latency")
    args = parser.parse_args()
    bench_id = uuid.uuid4().hex[:12]
    labels = {**checkout_labels(), BENCH_LABEL: bench_id}
    # The app's retention and pruning settings (DOCKER_KEEP_FINISHED, PRUNE_MIN_AGE_SECONDS, PRUNE_INTERVAL_SECONDS).
    retention = int(AppSettings.model_fields["docker_keep_finished"].default)
    client = connect(timeout=HOUSEKEEPING_TIMEOUT_SECONDS)
    removed = 0
    try:
        def make_backend() -> DockerJobBackend:
            return DockerJobBackend(client, retention=retention, labels=labels)

        empty = start_latencies(make_backend, args.starts)
        load_empty = os.getloadavg()[0]
        removed += remove_bench_containers(client, bench_id)
        made_in = make_finished_containers(client, args.finished, {PROJECT_LABEL: "true", **labels})
        piled = start_latencies(make_backend, args.starts)
        load_piled = os.getloadavg()[0]
        removed += remove_bench_containers(client, bench_id)
        empty_again = start_latencies(make_backend, args.starts)
        load_empty_again = os.getloadavg()[0]
        removed += remove_bench_containers(client, bench_id)

        with tempfile.TemporaryDirectory() as work:
            process = median_seconds(ProcessJobBackend(Path(work), project_root=ROOT), args.runs)
        docker_job = median_seconds(DockerJobBackend(client, retention=1000, labels=labels), args.runs)
    finally:
        removed += remove_bench_containers(client, bench_id)
        client.close()

    ratio = statistics.median(piled) / statistics.median(empty + empty_again)
    print(f"docker start latency: DockerJobBackend.start of a no-op job ({IMAGE}), {args.starts} starts after")
    print(f"1 warm-up, each job run to its end before the next; retention {retention}, background prune as in the app:")
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    made = f"{args.finished} finished of ours (never started, made in {made_in:.0f} s)"
    for label, latencies, load in [
        ("none finished of ours", empty, load_empty),
        (made, piled, load_piled),
        ("none finished of ours, again", empty_again, load_empty_again),
    ]:
        print(f"  {label:40} {spread(latencies)}   load {load:4.1f}")
    print(f"  median with / median without: {ratio:.2f}x  (goal <= {GOAL_RATIO}x: {verdict})")
    print(f"  (load: the 1-minute load average after the phase, on this machine's {os.cpu_count()} cores)")
    print(f"no-op job, start to ended, median of {args.runs} runs (after 1 warm-up):")
    print(f"  process backend  {process * 1000:7.1f} ms")
    print(f"  docker backend   {docker_job * 1000:7.1f} ms  ({IMAGE})")
    print(f"  docker / process {docker_job / process:7.2f}x  ({(docker_job - process) * 1000:+.0f} ms per run)")
    print(f"removed the {removed} container(s) this bench made (label {BENCH_LABEL}={bench_id}), no other")


if __name__ == "__main__":
    main()
