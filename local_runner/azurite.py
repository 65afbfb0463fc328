"""Start and stop a private Azurite (blob, queue, table) on loopback, for the CLI and the tests.

Azurite comes from npm, pinned, installed under `.local/azurite` by `scripts/bootstrap.sh`.
`--skipApiVersionCheck` is required: current Azure SDKs send an API version Azurite 3.35 rejects.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AZURITE_VERSION = "3.35.0"
LOCAL_AZURITE_BIN = PROJECT_ROOT / ".local" / "azurite" / "node_modules" / ".bin" / "azurite"
# Azurite answers in well under a second on these machines; allow for a cold npm cache.
STARTUP_TIMEOUT_SECONDS = 30.0

ACCOUNT_NAME = "devstoreaccount1"
# Azurite's published development key: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class AzuriteEndpoints:
    host: str
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        base = f"http://{self.host}"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT_NAME};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT_NAME};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT_NAME};"
        )

    def answers(self) -> bool:
        return all(_port_open(self.host, port) for port in (self.blob_port, self.queue_port, self.table_port))


DEFAULT_ENDPOINTS = AzuriteEndpoints("127.0.0.1", 10000, 10001, 10002)


def find_azurite() -> str | None:
    """The azurite executable: $AZURITE_BIN, the project's pinned install, or one on PATH."""
    for candidate in (os.environ.get("AZURITE_BIN"), str(LOCAL_AZURITE_BIN), shutil.which("azurite")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_azurite(endpoints: AzuriteEndpoints, *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Azurite in memory on the given loopback ports and wait until all three answer."""
    executable = find_azurite()
    if executable is None:
        raise FileNotFoundError(
            f"Azurite is not installed: run `scripts/bootstrap.sh` (npm install azurite@{AZURITE_VERSION}) "
            "or set AZURITE_BIN."
        )
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [
            executable, "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            "--blobHost", endpoints.host, "--blobPort", str(endpoints.blob_port),
            "--queueHost", endpoints.host, "--queuePort", str(endpoints.queue_port),
            "--tableHost", endpoints.host, "--tablePort", str(endpoints.table_port),
        ],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not endpoints.answers():
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {process.returncode} before answering")
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"Azurite did not answer on {endpoints} within {STARTUP_TIMEOUT_SECONDS}s")
        time.sleep(0.05)
    return process


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
