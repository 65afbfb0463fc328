"""Bursts of uploads on the in-process host: burst time against the jobs' CPU bound, intake, memory, latency.

    .venv/bin/python bench/burst.py [--uploads 200] [--bursts 3] [--singles 9] [--bare 7] [--alone 40]
        [--max-polling-interval S]
    (`make bench` runs it)

One private, in-memory Azurite and one in-process host on the process backend (the app's own settings:
MAX_CONCURRENT_RUNS and host.json as they are), then, in one run:

1. The bare job: `--bare` runs of the sample portfolio's parse job started through the process backend itself
   (no host: the backend's `start`, then `status` every 5 ms until it ended; one warm-up not counted). Their
   median wall time, and their CPU time: user + system of the job's processes (from the kernel's accounting of
   reaped children), and Azurite's for the job's own requests (its input, its outputs, its result and its
   message: Azurite serves nothing else meanwhile), which the machine spends on the job with or without a host.
   Then `--alone` of them started MAX_CONCURRENT_RUNS at once, the next as one ends, as the
   host's cap runs them: the jobs' own time at the cap, with no host (it includes what the jobs lose to their
   start-up, to their storage requests and to sharing the cores, which the CPU-bound time does not).
2. Upload -> recorded, one upload at a time (`--singles`): from just before `upload_blob` until the run's record
   is terminal (the runs table read every 10 ms). The median overhead is that median minus the bare job's.
3. `--bursts` bursts of `--uploads` uploads at once (16 uploading threads). For each: the time until every run is
   recorded, the intake time (until every upload has its record in the runs table, whatever its status), the
   CPU-bound time (the jobs' own CPU, `--uploads` times the bare job's with Azurite's share, over this machine's
   cores), the ratio,
   and the host's RSS (this process: the host runs in it) once the burst is recorded. Also the CPU the host
   (this process, less the bench's own uploading and polling), Azurite and the jobs used during the burst
   (the jobs' figure counts only the jobs the backend has reaped by then), to show where the rest went, and the
   burst's time against the jobs alone at the cap.

The runner's completion message is picked up by the queue trigger, which polls as the Functions host does: with
a back-off up to host.json's maxPollingInterval (2 s in Development when host.json sets none), so that wait is
part of the overhead; `--max-polling-interval 0.1` shows what the overhead would be if host.json set it.

Figures, never assertions. On a 2-core machine shared with other work the figures are noisy: repeat a run
before reading much into one figure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _local_app import local_app_settings  # noqa: E402
from azure.core.exceptions import ResourceNotFoundError  # noqa: E402
from azure.data.tables import TableClient  # noqa: E402
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient  # noqa: E402

from local_runner.azurite import AzuriteEndpoints, free_port, start_azurite  # noqa: E402
from local_runner.host.host import LocalHost, exempt_start_up_objects_from_gc  # noqa: E402
from local_runner.host.settings import load_host_settings  # noqa: E402
from local_runner.process_backend import ProcessJobBackend  # noqa: E402
from orchestrations import intake, runtime  # noqa: E402
from orchestrations.callback_tokens import derive_callback_token  # noqa: E402
from orchestrations.contracts import ExecutionRef, RunRequest, RunStatus  # noqa: E402
from orchestrations.job_spec import build_job_spec  # noqa: E402
from orchestrations.run_store import PARTITION  # noqa: E402
from orchestrations.storage_transport import storage_transport  # noqa: E402

SAMPLE = ROOT / "samples" / "sample_portfolio.csv"
UPLOAD_THREADS = 16
BARE_POLL_SECONDS = 0.005
RECORD_POLL_SECONDS = 0.01
# The bench's own reads of the runs table share the machine with what they measure: during intake every quarter
# second, then only the runs not yet finished, every half second (late by at most that, out of 80-120 s).
INTAKE_POLL_SECONDS = 0.25
BURST_POLL_SECONDS = 0.5
# Goals of issue 14.
BURST_GOAL_RATIO = 1.5
INTAKE_GOAL_SECONDS = 10.0
RSS_GOAL_GROWTH = 0.10
OVERHEAD_GOAL_SECONDS = 0.3
TERMINAL = {status.value for status in RunStatus if status.is_terminal}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds of a live process (Linux /proc), 0.0 where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reap(pid: int) -> None:
    """Wait for our child (the job's supervisor) to exit, so the kernel counts its CPU and its job's."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclasses.dataclass(frozen=True)
class BareJobs:
    """The sample portfolio's parse job started through the process backend itself: no host, no orchestration."""

    backend: ProcessJobBackend
    request: RunRequest
    azurite_pid: int

    @classmethod
    def prepare(cls, uploads: ContainerClient, work: Path, azurite_pid: int) -> tuple[BareJobs, BlobClient]:
        """The jobs' backend and request, and their input blob (to delete before the host starts)."""
        settings = runtime.settings()
        client = uploads.get_blob_client("parse_portfolio/bare-job.csv")
        client.upload_blob(SAMPLE.read_bytes(), overwrite=True)
        decision = intake.admit_upload(
            intake.StoredUpload(client), max_bytes=settings.upload_max_bytes, input_scopes=settings.input_scopes,
            policy=settings.run_policy(), now=datetime.now(UTC),
        )
        assert isinstance(decision, RunRequest), decision
        return cls(ProcessJobBackend(work / "bare-runs", project_root=ROOT), decision, azurite_pid), client

    def start(self) -> ExecutionRef:
        settings = runtime.settings()
        request = self.request.model_copy(update={"run_id": f"run-bare{uuid.uuid4().hex}"})
        spec = build_job_spec(request, derive_callback_token(settings.callback_token_key, request.run_id, 1), settings)
        # Its completion message goes to a queue nobody reads: the host is not running yet anyway.
        return self.backend.start(spec.model_copy(update={"env": {**spec.env, "RUNNER_EVENTS_QUEUE": "bench-bare"}}))

    def ended(self, ref: ExecutionRef) -> bool:
        """Whether the job has ended; once it has, its supervisor is reaped, so that the kernel counts its CPU."""
        if not self.backend.status(ref).has_ended:
            return False
        reap(int((self.backend.work_dir / ref.name / "pid").read_text()))
        return True

    def one_at_a_time(self, runs: int) -> tuple[float, float, float]:
        """Median wall seconds, mean CPU seconds of its processes and mean CPU seconds of Azurite's, of a job run
        alone (after one warm-up)."""
        walls, cpus, azurite_cpus = [], [], []
        for number in range(runs + 1):
            cpu_before, azurite_before, started = children_cpu(), process_cpu(self.azurite_pid), time.perf_counter()
            ref = self.start()
            while not self.ended(ref):
                time.sleep(BARE_POLL_SECONDS)
            if number:
                walls.append(time.perf_counter() - started)
                cpus.append(children_cpu() - cpu_before)
                azurite_cpus.append(process_cpu(self.azurite_pid) - azurite_before)
        return statistics.median(walls), statistics.mean(cpus), statistics.mean(azurite_cpus)

    def at_once(self, runs: int, at_most: int) -> float:
        """Wall seconds per job of `runs` jobs, `at_most` running at once (the next as one ends), as the host's
        cap runs them."""
        started, count = time.perf_counter(), 0
        running: list[ExecutionRef] = []
        while count < runs or running:
            while count < runs and len(running) < at_most:
                running.append(self.start())
                count += 1
            running = [ref for ref in running if not self.ended(ref)]
            time.sleep(BARE_POLL_SECONDS)
        return (time.perf_counter() - started) / runs


def wait_recorded(table: TableClient, run_id: str, timeout: float = 120.0) -> float:
    """perf_counter() when the run's record is first seen terminal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if table.get_entity(PARTITION, run_id, select=["status"])["status"] in TERMINAL:
                return time.perf_counter()
        except ResourceNotFoundError:
            pass  # not taken in yet
        time.sleep(RECORD_POLL_SECONDS)
    raise TimeoutError(f"run {run_id} was not recorded within {timeout} s")


def single_latencies(uploads: ContainerClient, table: TableClient, count: int) -> list[float]:
    content = SAMPLE.read_bytes()
    latencies = []
    for number in range(count + 1):
        blob_name = f"parse_portfolio/single-{number:03}-{uuid.uuid4().hex[:6]}.csv"
        started = time.perf_counter()
        etag = uploads.get_blob_client(blob_name).upload_blob(content)["etag"]
        recorded = wait_recorded(table, intake.derive_run_id("uploads", blob_name, etag))
        if number:  # the first warms the host up
            latencies.append(recorded - started)
    return latencies


def burst(uploads: ContainerClient, table: TableClient, count: int, label: str) -> tuple[float, float, float]:
    """(seconds until all recorded, seconds until all taken in, both from the first upload's start; CPU seconds
    this bench's own threads used meanwhile: uploading and reading the table, not the host's work)."""
    content = SAMPLE.read_bytes()
    since = datetime.now(UTC) - timedelta(seconds=1)
    started, main_cpu = time.perf_counter(), time.thread_time()
    upload_cpu: list[float] = []

    def upload(number: int) -> str:
        before = time.thread_time()
        blob_name = f"parse_portfolio/{label}-{number:04}.csv"
        etag = uploads.get_blob_client(blob_name).upload_blob(content)["etag"]
        upload_cpu.append(time.thread_time() - before)
        return intake.derive_run_id("uploads", blob_name, etag)

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        run_ids = set(pool.map(upload, range(count)))
    this_burst = f"PartitionKey eq '{PARTITION}' and requested_at ge datetime'{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    unfinished = this_burst + "".join(f" and status ne '{status}'" for status in sorted(TERMINAL))
    taken_in: float | None = None
    while True:
        # Until every upload has its record: the burst's records; then only those of its runs still going.
        query = this_burst if taken_in is None else unfinished
        listed = {entity["RowKey"] for entity in table.query_entities(query, select=["RowKey"])} & run_ids
        now = time.perf_counter()
        if taken_in is None and len(listed) == len(run_ids):
            taken_in = now - started
        elif taken_in is not None and not listed:
            return now - started, taken_in, time.thread_time() - main_cpu + sum(upload_cpu)
        time.sleep(INTAKE_POLL_SECONDS if taken_in is None else BURST_POLL_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--singles", type=int, default=9)
    parser.add_argument("--bare", type=int, default=7)
    parser.add_argument("--alone", type=int, default=40, metavar="JOBS",
                        help="bare jobs run MAX_CONCURRENT_RUNS at once: the jobs' own time at the cap (0: skip)")
    parser.add_argument("--max-polling-interval", type=float, default=None, metavar="SECONDS",
                        help="what if host.json's extensions.queues.maxPollingInterval were this (default: host.json)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
        azurite = start_azurite(endpoints, log_path=work / "azurite.log")
        os.environ.update(local_app_settings(endpoints, work / "runs", hub_prefix="Burst"))
        runtime.reset()
        try:
            # A connection for each uploading thread: with fewer, urllib3 opens and drops connections mid-burst.
            service = BlobServiceClient.from_connection_string(
                endpoints.connection_string, transport=storage_transport(pool_size=UPLOAD_THREADS)
            )
            uploads = service.create_container("uploads")
            bare, input_blob = BareJobs.prepare(uploads, work, azurite.pid)
            settings = runtime.settings()
            try:
                bare_wall, bare_cpu, bare_azurite_cpu = bare.one_at_a_time(args.bare)
                alone_per_job = bare.at_once(args.alone, settings.max_concurrent_runs) if args.alone else None
            finally:
                input_blob.delete_blob()  # before the host starts, so it never sees it
            print(f"in-process host, process backend, MAX_CONCURRENT_RUNS={settings.max_concurrent_runs}, "
                  f"{cores} cores; the sample portfolio's parse job:")
            print(f"  bare job (process backend alone, median of {args.bare}): {bare_wall:.3f} s wall, "
                  f"{bare_cpu:.3f} s CPU in its processes + {bare_azurite_cpu:.3f} s in Azurite for its requests")
            if alone_per_job is not None:
                print(f"  {args.alone} bare jobs, {settings.max_concurrent_runs} at once (MAX_CONCURRENT_RUNS): "
                      f"{alone_per_job:.3f} s each")
            table = TableClient.from_connection_string(endpoints.connection_string, settings.runs_table)
            queues = load_host_settings(ROOT).queues
            if args.max_polling_interval is not None:
                queues = dataclasses.replace(queues, max_polling_interval=timedelta(seconds=args.max_polling_interval))
                print(f"  what if: host.json extensions.queues.maxPollingInterval = {args.max_polling_interval} s")
            print(f"  host.json queues: batchSize {queues.batch_size}, newBatchThreshold "
                  f"{queues.effective_new_batch_threshold()}, longest queue poll interval "
                  f"{queues.polling_ceiling().total_seconds():g} s")
            with LocalHost(ROOT, queue_settings=queues):
                exempt_start_up_objects_from_gc()  # as `local_runner host` (make up) does once it has started
                latencies = single_latencies(uploads, table, args.singles)
                overhead = statistics.median(latencies) - bare_wall
                print(f"  upload -> recorded, one at a time, median of {args.singles}: "
                      f"{statistics.median(latencies):.3f} s (min {min(latencies):.3f}, max {max(latencies):.3f});"
                      f" overhead over the bare job {overhead:.3f} s (goal <= {OVERHEAD_GOAL_SECONDS} s: "
                      f"{overhead / OVERHEAD_GOAL_SECONDS:.2f}x of it)")
                if args.bursts < 1:
                    return
                job_cpu = bare_cpu + bare_azurite_cpu
                bound = args.uploads * job_cpu / cores
                print(f"  {args.uploads} uploads at once; CPU-bound time = {args.uploads} x {job_cpu:.3f} s / "
                      f"{cores} cores = {bound:.1f} s (goal: recorded <= {BURST_GOAL_RATIO}x, intake <= "
                      f"{INTAKE_GOAL_SECONDS:.0f} s, RSS within {RSS_GOAL_GROWTH:.0%} of the first burst's)")
                alone = args.uploads * alone_per_job if alone_per_job is not None else None
                if alone is not None:
                    print(f"  the same {args.uploads} jobs alone, at the cap: {alone:.1f} s ({alone / bound:.2f}x the "
                          "CPU-bound time: what the jobs themselves lose to start-up, storage waits and sharing cores)")
                print(f"  {'burst':>5} {'recorded':>9} {'ratio':>6} {'intake':>7} {'host RSS':>9} "
                      f"{'host CPU':>9} {'Azurite CPU':>12} {'jobs CPU':>9}" + ("  vs alone" if alone else ""))
                first_rss: float | None = None
                for number in range(1, args.bursts + 1):
                    host_before, azurite_before, jobs_before = own_cpu(), process_cpu(azurite.pid), children_cpu()
                    recorded, taken_in, bench_cpu = burst(uploads, table, args.uploads, f"burst{number}")
                    host_cpu = own_cpu() - host_before - bench_cpu
                    azurite_cpu = process_cpu(azurite.pid) - azurite_before
                    jobs_cpu = children_cpu() - jobs_before  # only the jobs reaped so far
                    rss = rss_mib()
                    first_rss = rss if first_rss is None else first_rss
                    print(f"  {number:>5} {recorded:>7.1f} s {recorded / bound:>5.2f}x {taken_in:>5.1f} s "
                          f"{rss:>5.0f} MiB {host_cpu:>7.1f} s {azurite_cpu:>10.1f} s {jobs_cpu:>7.1f} s"
                          + (f"  {recorded / alone:>7.2f}x" if alone else "")
                          + (f"  (RSS {rss / first_rss - 1:+.1%} of the first)" if number > 1 else ""))
        finally:
            azurite.terminate()
            azurite.wait(timeout=10)


if __name__ == "__main__":
    main()
