"""Start and stop a private Azurite (blob, queue, table) on loopback, for the CLI and the tests.

Azurite comes from npm, pinned, installed under `.local/azurite` by `scripts/bootstrap.sh`.
`--skipApiVersionCheck` is required: current Azure SDKs send an API version Azurite 3.35 rejects.
With `tls` it serves HTTPS (`--cert/--key`), and with `oauth` it also accepts bearer tokens
(`--oauth basic`: issuer, audience and lifetime are checked, the signature is not; HTTPS only).
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
    scheme: str = "http"  # "https" when Azurite is started with `tls`

    @property
    def blob_url(self) -> str:
        """The blob account URL, as a credential-based client (managed identity) takes it."""
        return self._account_url(self.blob_port)

    @property
    def queue_url(self) -> str:
        return self._account_url(self.queue_port)

    @property
    def table_url(self) -> str:
        return self._account_url(self.table_port)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url};QueueEndpoint={self.queue_url};TableEndpoint={self.table_url};"
        )

    def _account_url(self, port: int) -> str:
        return f"{self.scheme}://{self.host}:{port}/{ACCOUNT_NAME}"

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


def start_azurite(
    endpoints: AzuriteEndpoints,
    *,
    log_path: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    oauth: bool = False,
    location: Path | None = None,
    access_log: bool = False,
) -> subprocess.Popen[bytes]:
    """Start Azurite on the given loopback ports and wait until all three answer.

    Its data lives in memory, or in the directory `location` (so that a restarted Azurite has it
    again). `tls` is (certificate PEM, key PEM) and needs `endpoints.scheme == "https"`; `oauth` turns
    on bearer tokens (`--oauth basic`), which Azurite only allows over HTTPS. Its access log (a line per
    request) is off unless `access_log`: writing it costs Azurite 10-25% more CPU per request.
    """
    if (tls is not None) != (endpoints.scheme == "https"):
        raise ValueError(f"tls is {'set' if tls else 'not set'} but the endpoints' scheme is {endpoints.scheme}")
    if oauth and tls is None:
        raise ValueError("Azurite accepts OAuth (bearer tokens) only over HTTPS: pass tls=(cert, key)")
    executable = find_azurite()
    if executable is None:
        raise FileNotFoundError(
            f"Azurite is not installed: run `scripts/bootstrap.sh` (npm install azurite@{AZURITE_VERSION}) "
            "or set AZURITE_BIN."
        )
    options: list[str] = ["--location", str(location)] if location is not None else ["--inMemoryPersistence"]
    if tls is not None:
        options += ["--cert", str(tls[0]), "--key", str(tls[1])]
    if oauth:
        options += ["--oauth", "basic"]
    if not access_log:
        options.append("--silent")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [
            executable, "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            "--blobHost", endpoints.host, "--blobPort", str(endpoints.blob_port),
            "--queueHost", endpoints.host, "--queuePort", str(endpoints.queue_port),
            "--tableHost", endpoints.host, "--tablePort", str(endpoints.table_port),
            *options,
        ],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    # A TCP connect is the readiness check: scheme-agnostic, and Azurite's TLS listener is the same socket.
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
