"""One large output: the runner's own upload path against the SDK's parallel upload of the same file.

    .venv/bin/python bench/large_upload.py [--size-mib 1024] [--runs 3]
    (`make bench` runs it)

Starts a private Azurite that keeps its data on disk in a temporary directory (in memory it refuses
a blob this large: MemoryExtentStoreAtSizeLimit), writes one `--size-mib` file of random bytes, and
uploads it `--runs` times each way, alternating, after a warm-up of each, each upload in a fresh
Python process of its own:

- runner: `RunStorage.upload_files` of the one file, through `runner.storage.connect`'s transport;
- raw: `BlobClient.upload_blob(file, max_concurrency=8)`, the SDK's defaults otherwise.

Prints min / median / max seconds and MB/s of each, the ratio of the median throughputs
(runner / raw) and the peak RSS of each uploading process (ru_maxrss from wait4; this bench process
stays far smaller, so it does not raise the figure). The blob is deleted after each upload. It
asserts nothing. Both sides and Azurite share this machine's cores, so run it on a quiet machine.
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
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if find_azurite() is None:
        sys.exit("Azurite is not installed: run scripts/bootstrap.sh (or `make setup`)")
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory(prefix="bench-large-upload-") as work:
        azurite = start_azurite(endpoints, log_path=Path(work) / "azurite.log", location=Path(work) / "azurite")
        try:
            path = Path(work) / "output.bin"
            write_file(path, args.size_mib)
            service = BlobServiceClient.from_connection_string(endpoints.connection_string)
            service.create_container(CONTAINER)
            container = service.get_container_client(CONTAINER)
            size_mb = args.size_mib * 2**20 / 1e6
            print(
                f"one {args.size_mib} MiB file to a local Azurite (data on disk), {args.runs} runs of each "
                f"alternating after a warm-up, each upload in its own process; {os.cpu_count()} cores, "
                f"load average {os.getloadavg()[0]:.2f} at the start"
            )
            seconds: dict[str, list[float]] = {side: [] for side in SIDES}
            peaks: dict[str, list[int]] = {side: [] for side in SIDES}
            for run in range(args.runs + 1):
                for side in SIDES if run % 2 else reversed(list(SIDES)):
                    name = f"{side}-{run}.bin"
                    wall, peak = upload(side, endpoints.connection_string, path, name)
                    container.delete_blob(name)
                    if run:  # run 0 is the warm-up
                        seconds[side].append(wall)
                        peaks[side].append(peak)
            print(f"  {'':38} {'min / median / max s':>27} {'MB/s (min / median / max)':>27}   peak RSS (max)")
            for side in SIDES:
                rates = [size_mb / wall for wall in seconds[side]]
                print(
                    f"  {LABELS[side]:38} {spread(seconds[side], 's'):>27} {spread(rates, 'MB/s'):>27}   "
                    f"{max(peaks[side]) / 1024:6.1f} MiB"
                )
            ratio = statistics.median(seconds["raw"]) / statistics.median(seconds["runner"])
            print(f"  runner / raw throughput: {ratio:.2f}x (medians), "
                  f"{min(seconds['raw']) / min(seconds['runner']):.2f}x (best runs)")
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"  (this bench process peaked at {own / 1024:.1f} MiB: the RSS figures are the uploaders')")
        finally:
            azurite.terminate()
            azurite.wait(timeout=10)


if __name__ == "__main__":
    main()
