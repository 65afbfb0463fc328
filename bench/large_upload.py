"""One large output: the runner's own upload path against the SDK's parallel upload of the same file.

    .venv/bin/python bench/large_upload.py [--size-mib 1024] [--pairs 5]
    (`make bench` runs it)

Starts a private Azurite that keeps its data on disk in a temporary directory (in memory it refuses
a blob this large: MemoryExtentStoreAtSizeLimit), writes one `--size-mib` file of random bytes, and
uploads it in `--pairs` pairs, one upload of each side back to back, the order alternating from pair
to pair, after a warm-up pair of a smaller file, each upload in a fresh Python process of its own:

- runner: `RunStorage.upload_files` of the one file, through `runner.storage.connect`'s transport;
- raw: `BlobClient.upload_blob(file, max_concurrency=8)`, the SDK's defaults otherwise.

Prints min / median / max seconds and MB/s of each, the runner / raw throughput of each pair (min /
median / max) and the ratio of the median throughputs, and the peak RSS of each uploading process
(ru_maxrss from wait4; this bench process stays far smaller, so it does not raise the figure). The
headline is the median of the pairs' ratios: both uploads of a pair meet the same load on the machine,
which moves the ratio of medians by tens of percent when other work comes and goes. After each upload,
untimed, the blob is deleted and the page cache written back (sync), so that neither side pays for
the other's disk writes. It asserts nothing. Both sides and Azurite share this machine's cores, so run
it on a quiet machine.

The warm-up pair uploads a 256 MiB file: above the single-put limit, so both sides take the block path
the timed uploads take (64 blocks each), and each upload is a fresh process, so what it warms is Azurite
and the disk, not the uploaders; a 1 GiB warm-up pair took about 10 s more.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from local_runner.azurite import AzuriteEndpoints, find_azurite, free_port, start_azurite  # noqa: E402

CONTAINER = "bench-large"
# Above the runner's (and the SDK's) 64 MiB single-put limit, so that the warm-up goes in blocks too.
WARM_UP_MIB = 256
RAW_CONCURRENCY = 8
# Each side runs in its own interpreter and prints the seconds the upload took (imports and client
# set-up excluded); argv: project root, connection string, file, blob name.
RUNNER_UPLOAD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from runner.environment import OutputPrefix
from runner.storage import RunStorage, StorageClients, blob_transport
clients = StorageClients(
    BlobServiceClient.from_connection_string(sys.argv[2], transport=blob_transport()),
    QueueClient.from_connection_string(sys.argv[2], "bench-events"),
)
storage = RunStorage(clients, OutputPrefix.parse(f"az://{CONTAINER}/"))
file = storage.output_file(Path(sys.argv[3]), sys.argv[4], content_type="application/octet-stream")
started = time.perf_counter()
storage.upload_files([file])
print(time.perf_counter() - started)
""".replace("{CONTAINER}", CONTAINER)
RAW_UPLOAD = """
import sys, time
from azure.storage.blob import BlobServiceClient
blob = BlobServiceClient.from_connection_string(sys.argv[2]).get_blob_client("{CONTAINER}", sys.argv[4])
with open(sys.argv[3], "rb") as data:
    started = time.perf_counter()
    blob.upload_blob(data, max_concurrency={RAW_CONCURRENCY})
print(time.perf_counter() - started)
""".replace("{CONTAINER}", CONTAINER).replace("{RAW_CONCURRENCY}", str(RAW_CONCURRENCY))
SIDES = {"runner": RUNNER_UPLOAD, "raw": RAW_UPLOAD}
LABELS = {"runner": "runner (RunStorage.upload_files)", "raw": f"raw upload_blob(max_concurrency={RAW_CONCURRENCY})"}


def write_file(path: Path, mebibytes: int) -> None:
    """Random bytes, written a MiB at a time so that this process stays small."""
    with path.open("wb") as out:
        for _ in range(mebibytes):
            out.write(os.urandom(2**20))


def upload(side: str, connection_string: str, path: Path, name: str) -> tuple[float, int]:
    """Upload seconds and the uploading process's peak RSS in KiB."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", SIDES[side], str(ROOT), connection_string, str(path), name],
            stdout=out, stderr=errors,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        errors.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"the {side} upload exited {process.returncode}: {errors.read().decode()[-2000:]}")
        return float(out.read().decode().split()[-1]), usage.ru_maxrss


def spread(values: list[float], unit: str) -> str:
    return f"{min(values):7.2f} / {statistics.median(values):7.2f} / {max(values):7.2f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=5, help="timed pairs, after one warm-up pair")
    args = parser.parse_args()
    if find_azurite() is None:
        sys.exit("Azurite is not installed: run scripts/bootstrap.sh (or `make setup`)")
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory(prefix="bench-large-upload-") as work:
        azurite = start_azurite(endpoints, log_path=Path(work) / "azurite.log", location=Path(work) / "azurite")
        try:
            path, warm_up = Path(work) / "output.bin", Path(work) / "warm-up.bin"
            warm_up_mib = min(WARM_UP_MIB, args.size_mib)
            write_file(path, args.size_mib)
            write_file(warm_up, warm_up_mib)
            service = BlobServiceClient.from_connection_string(endpoints.connection_string)
            service.create_container(CONTAINER)
            container = service.get_container_client(CONTAINER)
            size_mb = args.size_mib * 2**20 / 1e6
            print(
                f"one {args.size_mib} MiB file to a local Azurite (data on disk), {args.pairs} pairs of uploads "
                f"(order alternating) after a {warm_up_mib} MiB warm-up pair, each upload in its own process; "
                f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start"
            )
            seconds: dict[str, list[float]] = {side: [] for side in SIDES}
            peaks: dict[str, list[int]] = {side: [] for side in SIDES}
            for pair in range(args.pairs + 1):
                for side in SIDES if pair % 2 else reversed(list(SIDES)):
                    name = f"{side}-{pair}.bin"
                    wall, peak = upload(side, endpoints.connection_string, path if pair else warm_up, name)
                    container.delete_blob(name)
                    # Azurite's writes of this upload would otherwise go to disk during the next one.
                    os.sync()
                    if pair:  # pair 0 is the warm-up
                        seconds[side].append(wall)
                        peaks[side].append(peak)
            print(f"  {'':38} {'min / median / max s':>27} {'MB/s (min / median / max)':>27}   peak RSS (max)")
            for side in SIDES:
                rates = [size_mb / wall for wall in seconds[side]]
                print(
                    f"  {LABELS[side]:38} {spread(seconds[side], 's'):>27} {spread(rates, 'MB/s'):>27}   "
                    f"{max(peaks[side]) / 1024:6.1f} MiB"
                )
            pairs = [raw / runner for raw, runner in zip(seconds["raw"], seconds["runner"], strict=True)]
            ratio = statistics.median(seconds["raw"]) / statistics.median(seconds["runner"])
            print(f"  runner / raw throughput: {statistics.median(pairs):.2f}x, the median of the pairs' ratios "
                  f"(min {min(pairs):.2f}x, max {max(pairs):.2f}x); {ratio:.2f}x, the ratio of the medians")
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"  (this bench process peaked at {own / 1024:.1f} MiB: the RSS figures are the uploaders')")
        finally:
            azurite.terminate()
            azurite.wait(timeout=10)


if __name__ == "__main__":
    main()
