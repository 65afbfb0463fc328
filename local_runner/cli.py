"""The developer CLI: `python -m local_runner --help`.

    demo   run a sample portfolio through the whole flow and print its run record
    up     keep Azurite and the in-process host running, for your own uploads
    down   stop what `up` started
    host   run the in-process host in the foreground (what `up` runs)
    upload upload a file to the uploads container and follow its run
    runs   list recent runs; `runs RUN_ID` shows one
    prune  remove the finished run containers this project created
    callback-key  print this checkout's CALLBACK_TOKEN_KEY (for local.settings.json under `func start`)
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient
from rich.console import Console
from rich.table import Table

from local_runner import services
from local_runner.host.settings import apply_local_settings, load_local_settings
from local_runner.log_format import configure_logging

PROJECT_ROOT = services.PROJECT_ROOT
SAMPLE_PORTFOLIO = PROJECT_ROOT / "samples" / "sample_portfolio.csv"
DEFAULT_PORT = 7071
# A parse run takes a few seconds here; the bound leaves room for a cold machine.
FOLLOW_TIMEOUT_SECONDS = 300.0
POLL_INTERVAL_SECONDS = 0.5
PHASES = ["uploaded", "queued", "starting", "running", "recording"]

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
console = Console()

PortOption = Annotated[int, typer.Option(help="Port of the host's HTTP API (local.settings.json Host.LocalHttpPort).")]


@cli.command()
def demo(
    portfolio: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV to parse.")] = SAMPLE_PORTFOLIO,
    port: PortOption = DEFAULT_PORT,
) -> None:
    """Upload a sample portfolio, follow its run through every phase, print the run record."""
    from local_runner.host.host import LocalHost
    from orchestrations import runtime

    apply_local_settings(load_local_settings(PROJECT_ROOT))
    services.provide_callback_key()
    with services.azurite_for_session() as started:
        console.print("Azurite: started for this demo" if started else "Azurite: using the one already running")
        with LocalHost.from_app_dir(PROJECT_ROOT, http_port=port) as host:
            console.print(f"Host: functions loaded, HTTP API on {host.base_url}/api (backend {runtime.backend().name})")
            record = _upload_and_follow(portfolio, "parse_portfolio", host.base_url)
    raise typer.Exit(0 if record.get("status") == "succeeded" else 1)


@cli.command()
def up(port: PortOption = DEFAULT_PORT) -> None:
    """Start Azurite and the host in the background; they keep running until `down`."""
    console.print(services.start_background_azurite())
    console.print(services.start_background_host(port))
    base_url = f"http://127.0.0.1:{port}"
    if not _wait_for_api(base_url, timeout=60):
        console.print(f"[red]The host did not answer on {base_url}; see {services.LOG_DIR / 'host.log'}[/red]")
        raise typer.Exit(1)
    apply_local_settings(load_local_settings(PROJECT_ROOT))
    uploads = _uploads_container()  # made now, so that a first upload with any client finds it
    console.print(
        f"Ready. Upload to container [bold]{uploads.container_name}[/bold] as parse_portfolio/<file>.csv "
        f"(connection string: AzureWebJobsStorage in local.settings.json).\n"
        f"Runs: {base_url}/api/runs   Stop everything: make down"
    )


@cli.command()
def down() -> None:
    """Stop the host and Azurite that `up` started (nothing else), and remove our finished containers."""
    console.print(services.stop_service("host"))
    console.print(services.stop_service("azurite"))
    prune(keep=0)


@cli.command()
def host(port: PortOption = DEFAULT_PORT) -> None:
    """Run the in-process host in the foreground until interrupted."""
    from local_runner.host.host import LocalHost

    configure_logging()
    apply_local_settings(load_local_settings(PROJECT_ROOT))
    services.provide_callback_key()
    with LocalHost.from_app_dir(PROJECT_ROOT, http_port=port) as running:
        # `make down` sends SIGTERM: stop the pollers and the engine cleanly, as Ctrl+C does.
        signal.signal(signal.SIGTERM, lambda *_: running.stop())
        console.print(f"Host running: {running.base_url}/api/runs (Ctrl+C to stop)")
        try:
            running.wait()
        except KeyboardInterrupt:
            console.print("Stopping.")


@cli.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="File to upload.")],
    task_type: Annotated[str, typer.Option(help="First path segment of the blob name.")] = "parse_portfolio",
    port: PortOption = DEFAULT_PORT,
) -> None:
    """Upload a file to a running host (`make up`) and follow its run."""
    apply_local_settings(load_local_settings(PROJECT_ROOT))
    record = _upload_and_follow(file, task_type, f"http://127.0.0.1:{port}")
    raise typer.Exit(0 if record.get("status") == "succeeded" else 1)


@cli.command()
def runs(
    run_id: Annotated[str | None, typer.Argument(help="Show this run only.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    port: PortOption = DEFAULT_PORT,
) -> None:
    """List recent runs from a running host, or show one."""
    base_url = f"http://127.0.0.1:{port}"
    if run_id:
        _print_record(_get_json(f"{base_url}/api/runs/{run_id}"))
        return
    listing = _get_json(f"{base_url}/api/runs", params={"status": status} if status else None)
    table = Table("run id", "status", "task type", "requested", "outputs", "error")
    table.columns[0].no_wrap = True
    for record in listing.get("runs", []):
        error = (record.get("error") or {}).get("code", "")
        table.add_row(record["run_id"], record["status"], record["task_type"], record["requested_at"],
                      str(record["outputs_count"]), error)
    console.print(table)


@cli.command()
def prune(
    keep: Annotated[int, typer.Option(min=0, help="Newest finished ones to keep (runs: DOCKER_KEEP_FINISHED).")] = 0,
) -> None:
    """Remove the finished run containers this project created (label pacta-runner.managed=true), and no other."""
    from local_runner import docker_backend

    if not docker_backend.engine_available():
        console.print(f"No Docker engine answers at {docker_backend.engine_address()}: nothing to prune.")
        return
    removed = docker_backend.prune(keep)
    console.print(f"Removed {len(removed)} finished run container(s)" + (f": {', '.join(removed)}" if removed else "."))


@cli.command("callback-key")
def callback_key() -> None:
    """Print this checkout's callback token key (made on first use, kept in .local/callback-token-key).

    `demo`, `up` and `host` use it unless CALLBACK_TOKEN_KEY is set; under `func start`, put it in
    local.settings.json as Values.CALLBACK_TOKEN_KEY (that file is not for committing then).
    """
    print(services.local_callback_key())


def _upload_and_follow(file: Path, task_type: str, base_url: str) -> dict[str, Any]:
    from orchestrations.intake import derive_run_id

    uploads = _uploads_container()
    container = uploads.container_name
    blob_name = f"{task_type}/{time.strftime('%Y%m%dT%H%M%S')}-{file.name}"
    with file.open("rb") as data:
        uploaded = uploads.get_blob_client(blob_name).upload_blob(data)
    run_id = derive_run_id(container, blob_name, uploaded["etag"])
    console.print(f"Uploaded {file} to az://{container}/{blob_name}\nRun id: [bold]{run_id}[/bold]")
    record = _follow(base_url, run_id)
    _print_record(record)
    return record


def _uploads_container() -> ContainerClient:
    """The uploads container (UPLOADS_CONTAINER) in AzureWebJobsStorage, created if missing."""
    service = BlobServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"])
    container = service.get_container_client(os.environ.get("UPLOADS_CONTAINER", "uploads"))
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    return container


def _follow(base_url: str, run_id: str) -> dict[str, Any]:
    """Poll the status API, showing each phase as the run reaches it, until the run ends."""
    shown: set[str] = {"uploaded"}
    console.print("  [green]✓[/green] uploaded")
    deadline = time.monotonic() + FOLLOW_TIMEOUT_SECONDS
    record: dict[str, Any] = {}
    with console.status("waiting for the blob trigger") as spinner:
        while time.monotonic() < deadline:
            response = requests.get(f"{base_url}/api/runs/{run_id}", timeout=10)
            if response.status_code == 200:
                record = response.json()
                phase = _phase(record)
                if phase not in shown:
                    shown.add(phase)
                    console.print(f"  [green]✓[/green] {phase}")
                spinner.update(f"{phase} ...")
                if record["status"] in {"succeeded", "failed", "timed_out", "cancelled", "rejected"}:
                    return record
            time.sleep(POLL_INTERVAL_SECONDS)
    console.print(f"[red]Run {run_id} did not end within {FOLLOW_TIMEOUT_SECONDS:.0f} s.[/red]")
    return record


def _phase(record: dict[str, Any]) -> str:
    custom = ((record.get("orchestration") or {}).get("custom_status") or {})
    phase = custom.get("phase") if isinstance(custom, dict) else None
    if record["status"] in {"queued", "starting", "running"} and phase in PHASES:
        return str(phase)
    return str(record["status"])


def _print_record(record: dict[str, Any]) -> None:
    colour = "green" if record.get("status") == "succeeded" else "red"
    console.print(f"\nRun [bold]{record.get('run_id')}[/bold]: [{colour}]{record.get('status')}[/{colour}]")
    for label, key in [("task type", "task_type"), ("source", "source_uri"), ("backend", "backend"),
                       ("execution", "execution_ref"), ("requested", "requested_at"),
                       ("started", "started_at"), ("finished", "finished_at"),
                       ("result document", "result_uri"), ("runner log", "log_uri")]:
        if record.get(key):
            console.print(f"  {label:16} {record[key]}")
    if record.get("outputs"):
        console.print(f"  outputs ({record.get('outputs_count')}):")
        for uri in record["outputs"]:
            console.print(f"    {uri}")
    if record.get("error"):
        console.print(f"  error            {record['error']['code']}: {record['error']['message']}")


def _get_json(url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        response = requests.get(url, params=params, timeout=10)
    except requests.ConnectionError:
        console.print(f"[red]Nothing answers on {url}: start the host with `make up`.[/red]")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        console.print(f"[red]{response.status_code}: {response.text}[/red]")
        raise typer.Exit(1)
    return dict(response.json())


def _wait_for_api(base_url: str, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base_url}/api/runs?limit=1", timeout=2).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    return False
