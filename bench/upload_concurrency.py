"""Uploading a report's many small files: the runner's concurrent uploader against a sequential loop.

    .venv/bin/python bench/upload_concurrency.py [--files 500] [--size 20480] [--repeat 5] [--threads 16]
        [--latency-ms 10]
    (`make bench` runs it)

Starts a private, in-memory Azurite (as the tests do), writes `--files` files of `--size` random
bytes, and uploads them `--repeat` times each way through the same client: with
`RunStorage.upload_files` (UPLOAD_CONCURRENCY at once, tasks of one asyncio event loop over the SDK's aiohttp
transport) and file after file through the sync client, as the runner did before (and PACTA's Go runner did), the
two kinds alternating which goes first. One warm-up upload of each
kind is not counted; what each timed batch wrote is deleted after it, untimed, so that every batch
meets the same Azurite (its CPU per upload grows with its in-memory store). Prints the median times
and the ratio; it asserts nothing.

Against Azurite on the same machine each upload costs CPU on both sides and no network time, so the
ratio is bounded by the cores. A second round adds `--latency-ms` of waiting to every request (a
transport that sleeps before sending, no CPU: each client has its own), standing in for the round trip to Azure
Storage.

So it also prints the CPU each upload costs, in ms, in this process (the client: all its threads, which share
one core under the GIL) and in Azurite's node process (from /proc, Linux only), and
the best speed-up that CPU allows: the sequential time over the longest of the client's CPU, the
CPU of Azurite's main thread (its one event loop) and all of it spread over the cores; which of
the three binds; and the speed-up as a fraction of that bound. Other work on the machine takes
cores from both sides: repeat the bench and compare runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.core.exceptions import ResourceExistsError  # noqa: E402
from azure.core.pipeline.transport import AsyncHttpTransport, HttpTransport  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient  # noqa: E402
from azure.storage.queue import QueueClient  # noqa: E402

from local_runner.azurite import AzuriteEndpoints, find_azurite, free_port, start_azurite  # noqa: E402
from runner.environment import OutputPrefix  # noqa: E402
from runner.storage import (  # noqa: E402
    UPLOAD_CONCURRENCY,
    RunStorage,
    StorageClients,
    async_blob_transport,
    blob_transport,
)

CONTAINER = "bench-uploads"
CONTENT_TYPE = "text/javascript"
WARM_UP_FILES = 20


def make_files(directory: Path, count: int, size: int) -> list[Path]:
    paths = []
    for number in range(count):
        path = directory / f"report/libs/f{number:04}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


class DelayedTransport(HttpTransport):
    """A transport that waits `delay` seconds before each request: a network round trip without CPU."""

    def __init__(self, inner: HttpTransport, delay: float) -> None:
        self._inner, self._delay = inner, delay

    def send(self, request: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        return self._inner.send(request, **kwargs)

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> DelayedTransport:
        self._inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self._inner.__exit__(*args)


class DelayedAsyncTransport(AsyncHttpTransport):
    """The same wait for `upload_files`' asyncio client: the event loop sends others meanwhile."""

    def __init__(self, inner: AsyncHttpTransport, delay: float) -> None:
        self._inner, self._delay = inner, delay

    async def send(self, request: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self._delay)
        return await self._inner.send(request, **kwargs)

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> DelayedAsyncTransport:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self._inner.__aexit__(*args)


def process_cpu(pid: int, thread: int | None = None) -> float | None:
    """Seconds of CPU (user + system) used by a process, or by one of its threads; None off Linux."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float | None:
    """Seconds of CPU the whole machine has been busy (all cores, from /proc/stat); None off Linux."""
    try:
        fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Timing:
    """One upload of all the files: wall seconds, and CPU seconds of the client, of Azurite and of
    everything else on the machine (other processes and the kernel, which take cores from both)."""

    wall: float
    client_cpu: float
    azurite_cpu: float | None
    azurite_loop_cpu: float | None  # its main thread, where the JavaScript runs
    others_cpu: float | None = None


def timed(upload: Callable[[], object], azurite_pid: int) -> Timing:
    def azurite_cpu(thread: int | None = None) -> Callable[[], float | None]:
        before = process_cpu(azurite_pid, thread)

        def used() -> float | None:
            after = process_cpu(azurite_pid, thread)
            return None if before is None or after is None else after - before

        return used

    azurite_all, azurite_loop = azurite_cpu(), azurite_cpu(thread=azurite_pid)
    machine_before = machine_cpu()
    started, client_before = time.perf_counter(), time.process_time()
    upload()
    wall, client_cpu = time.perf_counter() - started, time.process_time() - client_before
    machine_after, azurite = machine_cpu(), azurite_all()
    others = (
        None if machine_before is None or machine_after is None or azurite is None
        else max(0.0, machine_after - machine_before - client_cpu - azurite)
    )
    return Timing(wall, client_cpu, azurite, azurite_loop(), others)


def median(timings: list[Timing]) -> Timing:
    def of(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return statistics.median(known) if len(known) == len(values) else None

    return Timing(
        statistics.median(t.wall for t in timings),
        statistics.median(t.client_cpu for t in timings),
        of([t.azurite_cpu for t in timings]),
        of([t.azurite_loop_cpu for t in timings]),
        of([t.others_cpu for t in timings]),
    )


def cpu_per_upload(timing: Timing, files: int) -> str:
    """'client / Azurite' CPU milliseconds per upload."""
    azurite = "?" if timing.azurite_cpu is None else f"{timing.azurite_cpu / files * 1000:.2f}"
    return f"{timing.client_cpu / files * 1000:.2f} / {azurite}"


def cpu_bound(sequential: Timing, concurrent: Timing) -> tuple[float, str] | None:
    """The best speed-up the concurrent upload's CPU allows on this machine's cores, and what binds it."""
    if concurrent.azurite_cpu is None or concurrent.azurite_loop_cpu is None:
        return None
    cores = os.cpu_count() or 1
    floors = {
        "client": concurrent.client_cpu,
        "Azurite loop": concurrent.azurite_loop_cpu,
        "all cores": (concurrent.client_cpu + concurrent.azurite_cpu) / cores,
    }
    binding = max(floors, key=lambda side: floors[side])
    return sequential.wall / floors[binding], binding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--size", type=int, default=20 * 1024, help="bytes per file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=UPLOAD_CONCURRENCY, help="upload_files' uploads at once")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="added per request in the second round")
    args = parser.parse_args()
    if find_azurite() is None:
        sys.exit("Azurite is not installed: run scripts/bootstrap.sh (or `make setup`)")
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory() as work:
        azurite = start_azurite(endpoints, log_path=Path(work) / "azurite.log")
        try:
            paths = make_files(Path(work), args.files, args.size)
            megabytes = args.files * args.size / 1e6
            print(f"{args.files} files of {args.size} bytes ({megabytes:.1f} MB) to a local Azurite, "
                  f"median of {args.repeat}, {os.cpu_count()} cores:")
            threads = f"upload_files ({args.threads} at once)"
            print(f"  {'':30} {'sequential loop':>16} {threads:>26} {'speed-up':>9} "
                  f"{'CPU bound (binding side)':>26} {'of bound':>9}")
            rounds = (("as it is", 0.0), (f"+ {args.latency_ms:g} ms per request", args.latency_ms))
            for label, latency in rounds:
                sequential_runs, concurrent_runs = measure(
                    endpoints.connection_string, paths, Path(work), args.repeat, latency, azurite.pid, args.threads
                )
                one_by_one, concurrent = median(sequential_runs), median(concurrent_runs)
                speed_up = one_by_one.wall / concurrent.wall
                pairs = sorted(s.wall / c.wall for s, c in zip(sequential_runs, concurrent_runs, strict=True))
                bound = cpu_bound(one_by_one, concurrent)
                bound_text = "?" if bound is None else f"{bound[0]:.2f}x ({bound[1]})"
                of_bound = "?" if bound is None else f"{speed_up / bound[0]:.2f}"
                print(
                    f"  {label:30} {one_by_one.wall:14.2f} s {concurrent.wall:24.2f} s "
                    f"{speed_up:8.2f}x {bound_text:>26} {of_bound:>9}"
                )
                busy = "?" if concurrent.others_cpu is None else f"{concurrent.others_cpu / concurrent.wall:.2f}"
                print(f"  {'  speed-up of each pair':30} min {pairs[0]:.2f}x / median "
                      f"{statistics.median(pairs):.2f}x / max {pairs[-1]:.2f}x; other processes and the kernel kept "
                      f"{busy} of the {os.cpu_count()} cores busy during upload_files")
                print(
                    f"  {'  CPU ms/upload, client / Azurite':30} {cpu_per_upload(one_by_one, args.files):>16} "
                    f"{cpu_per_upload(concurrent, args.files):>26}"
                )
        finally:
            azurite.terminate()
            azurite.wait(timeout=10)


def measure(
    connection_string: str,
    paths: list[Path],
    root: Path,
    repeat: int,
    latency_ms: float,
    azurite_pid: int,
    threads: int = UPLOAD_CONCURRENCY,
) -> tuple[list[Timing], list[Timing]]:
    """Timings of the sequential loop and of upload_files over the same files, pair by pair."""
    transport: HttpTransport = blob_transport()
    if latency_ms:
        transport = DelayedTransport(transport, latency_ms / 1000)

    def async_client() -> AsyncBlobServiceClient:
        inner = async_blob_transport()
        delayed = DelayedAsyncTransport(inner, latency_ms / 1000) if latency_ms else inner
        return AsyncBlobServiceClient.from_connection_string(connection_string, transport=delayed)

    clients = StorageClients(
        BlobServiceClient.from_connection_string(connection_string, transport=transport),
        QueueClient.from_connection_string(connection_string, "bench-events"),
        async_blob_service=async_client,
    )
    prefix = f"latency-{latency_ms:g}/"
    storage = RunStorage(clients, OutputPrefix.parse(f"az://{CONTAINER}/{prefix}"))
    with suppress(ResourceExistsError):  # made in the first round
        clients.blob_service.create_container(CONTAINER)

    def names(label: str) -> list[tuple[Path, str]]:
        return [(path, f"{label}/{path.relative_to(root).as_posix()}") for path in paths]

    def concurrently(label: str, count: int | None = None) -> None:
        storage.upload_files(
            [storage.output_file(path, name, content_type=CONTENT_TYPE) for path, name in names(label)[:count]],
            concurrency=threads,
        )

    def one_by_one(label: str, count: int | None = None) -> None:
        for path, name in names(label)[:count]:
            storage.upload_file(path, name, content_type=CONTENT_TYPE)

    def emptied(label: str) -> None:
        """Delete what a batch wrote (not timed): Azurite's cost per upload grows with its in-memory store."""
        container = clients.blob_service.get_container_client(CONTAINER)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(container.delete_blob, [blob.name for blob in container.list_blobs(f"{prefix}{label}/")]))

    concurrently("warm-up-concurrent", WARM_UP_FILES)
    one_by_one("warm-up-sequential", WARM_UP_FILES)
    concurrent_times: list[Timing] = []
    sequential_times: list[Timing] = []
    for round_number in range(repeat):
        for kind in ("concurrent", "sequential") if round_number % 2 else ("sequential", "concurrent"):
            label = f"{kind}-{round_number}"
            upload = concurrently if kind == "concurrent" else one_by_one
            (concurrent_times if kind == "concurrent" else sequential_times).append(
                timed(partial(upload, label), azurite_pid)
            )
            emptied(label)
    storage.close()
    return sequential_times, concurrent_times


if __name__ == "__main__":
    main()
