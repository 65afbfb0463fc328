"""The developer CLI: `python -m local_runner --help`.

    demo   run a sample portfolio through the whole flow and print its run record
    up     keep Azurite and the in-process host running, for your own uploads
    down   stop what `up` started
    host   run the in-process host in the foreground (what `up` runs)
    upload upload a file to the uploads container and follow its run
    runs   list recent runs; `runs RUN_ID` shows one (`--json`: the API's answer)
    logs   print a run's runner log
    watch  follow a run's phases until it ends
    cancel cancel a run that has not ended
    rerun  start a new run of the same upload
    prune  remove the finished run containers this project created
    callback-key  print this checkout's CALLBACK_TOKEN_KEY (for local.settings.json under `func start`)
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from local_runner import services
from local_runner.host.settings import apply_local_settings, load_local_settings
from local_runner.log_format import configure_logging
from local_runner.run_api import ApiError, RunApi
from local_runner.trace_collector import CollectedSpan, read_spans, start_local_collector
from orchestrations.contracts import RunStatus
from orchestrations.queries import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT

PROJECT_ROOT = services.PROJECT_ROOT
SAMPLE_PORTFOLIO = PROJECT_ROOT / "samples" / "sample_portfolio.csv"
DEFAULT_PORT = 7071
# A parse run takes a few seconds here; the bound leaves room for a cold machine.
FOLLOW_TIMEOUT_SECONDS = 300.0
POLL_INTERVAL_SECONDS = 0.5
PHASES = ["uploaded", "queued", "starting", "running", "recording"]
# `runs` shows ids by a prefix at least this long ("run-" and 8 hex digits), longer where two would share it;
# every command taking a RUN_ID takes such a prefix. Keeps the table within 80 columns with the status whole.
SHORT_ID_CHARS = 12
INTERRUPTED_EXIT_CODE = 130  # the shell's code for Ctrl+C: "stopped watching", not "the run failed"

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # messages whole, to copy or grep

PortOption = Annotated[int, typer.Option(help="Port of the host's HTTP API (local.settings.json Host.LocalHttpPort).")]
ApiUrlOption = Annotated[str | None, typer.Option(
    "--api-url", envvar="PACTA_API_URL", show_default=False,
    help="Base URL of the app, e.g. https://APP.azurewebsites.net (env PACTA_API_URL; unset: the local host on "
         "--port). The function key comes from env PACTA_FUNCTION_KEY.",
)]
RunIdArgument = Annotated[str, typer.Argument(help="The run id, or a prefix of it that `runs` shows.")]


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
def host(
    port: PortOption = DEFAULT_PORT,
    spans_file: Annotated[Path, typer.Option(help="Where the host's own trace collector writes the spans it "
                                             "receives (when the settings name no destination).")]
    = services.SPANS_FILE,
) -> None:
    """Run the in-process host in the foreground until interrupted."""
    from local_runner.host.host import LocalHost, exempt_start_up_objects_from_gc
    from orchestrations import telemetry

    configure_logging()
    apply_local_settings(load_local_settings(PROJECT_ROOT))
    services.provide_callback_key()
    # Each run's trace, unless the settings name a destination (`trace RUN_ID` shows it).
    collector = start_local_collector(spans_file, os.environ)
    with collector or contextlib.nullcontext():
        try:
            with LocalHost.from_app_dir(PROJECT_ROOT, http_port=port) as running:
                # `make down` sends SIGTERM: stop the pollers and the engine cleanly, as Ctrl+C does.
                signal.signal(signal.SIGTERM, lambda *_: running.stop())
                exempt_start_up_objects_from_gc()
                console.print(f"Host running: {running.base_url}/api/runs (Ctrl+C to stop)")
                try:
                    running.wait()
                except KeyboardInterrupt:
                    console.print("Stopping.")
        finally:
            # The app's spans and metrics not yet sent go now, while the collector still listens: at the
            # process's exit they would find it stopped, and be lost.
            telemetry.shutdown()


@cli.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="File to upload.")],
    task_type: Annotated[str, typer.Option(help="First path segment of the blob name.")] = "parse_portfolio",
    port: PortOption = DEFAULT_PORT,
) -> None:
    """Upload a file to a running host (`make up`) and follow its run."""
    apply_local_settings(load_local_settings(PROJECT_ROOT))
    with _api_errors():
        record = _upload_and_follow(file, task_type, f"http://127.0.0.1:{port}")
    raise typer.Exit(0 if record.get("status") == "succeeded" else 1)


@cli.command()
def runs(
    run_id: Annotated[str | None, typer.Argument(help="Show this run only (its id or a prefix `runs` shows).")] = None,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIST_LIMIT, help="At most this many runs.")] = (
        DEFAULT_LIST_LIMIT),
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON answer as it is.")] = False,
    port: PortOption = DEFAULT_PORT,
    api_url: ApiUrlOption = None,
) -> None:
    """List recent runs, newest first, or show one."""
    api = _api(port, api_url)
    with _api_errors():
        if run_id:
            response = api.for_run(run_id, api.get_run)
        else:
            response = api.list_runs(status=status.value if status else None, limit=limit)
    if as_json:
        typer.echo(response.text)
    elif run_id:
        _print_record(response.json())
    else:
        console.print(runs_table(response.json()["runs"]))


@cli.command()
def logs(run_id: RunIdArgument, port: PortOption = DEFAULT_PORT, api_url: ApiUrlOption = None) -> None:
    """Print the runner's log of a run (runner.log, once the runner has uploaded it)."""
    api = _api(port, api_url)
    with _api_errors():
        response = api.for_run(run_id, api.get_log)
    typer.echo(response.content, nl=False)


@cli.command()
def trace(run_id: RunIdArgument) -> None:
    """Show a run's trace (its spans from the host, the runner and its container), as the local host collected it."""
    spans = read_spans(services.SPANS_FILE)
    run_ids = {span.run_id for span in spans if span.run_id and span.run_id.startswith(run_id)}
    if len(run_ids) != 1:
        found = "several runs" if run_ids else "no spans"
        errors.print(f"{found} for {run_id!r} in {services.SPANS_FILE} (the local host collects them when no "
                     "OTEL_EXPORTER_OTLP_ENDPOINT or APPLICATIONINSIGHTS_CONNECTION_STRING is set)")
        raise typer.Exit(1)
    full_id = run_ids.pop()
    traces = {span.trace_id for span in spans if span.run_id == full_id}
    ours = sorted((span for span in spans if span.trace_id in traces), key=lambda span: span.start_ns)
    console.print(span_tree(full_id, ours))


def span_tree(run_id: str, spans: list[CollectedSpan]) -> Tree:
    """The spans under their parents, each with its start (from the first span), duration, service and status."""
    origin = spans[0].start_ns
    tree = Tree(f"run [bold]{escape(run_id)}[/bold]: trace {', '.join(sorted({s.trace_id for s in spans}))}")
    nodes: dict[str, Tree] = {}
    for span in spans:
        colour = "red" if span.status == "error" else "green" if span.name == "record_outcome" else "default"
        label = (f"[{colour}]{escape(span.name)}[/{colour}]  +{(span.start_ns - origin) / 1e9:.3f} s  "
                 f"{(span.end_ns - span.start_ns) / 1e6:.1f} ms  [dim]{escape(span.service)}[/dim]")
        nodes[span.span_id] = nodes.get(span.parent_span_id, tree).add(label)
    return tree


@cli.command()
def watch(run_id: RunIdArgument, port: PortOption = DEFAULT_PORT, api_url: ApiUrlOption = None) -> None:
    """Follow a run's phases until it ends; exit 0 if it succeeded, 1 if not (130 on Ctrl+C)."""
    api = _api(port, api_url)
    try:
        with _api_errors():
            run_id = str(api.for_run(run_id, api.get_run).json()["run_id"])
            record = _follow(api, run_id, waiting_for="the run's next phase", timeout=None)
    except KeyboardInterrupt:
        errors.print(f"Stopped watching run {run_id}; the run goes on.")
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
    _print_record(record)
    raise typer.Exit(0 if record.get("status") == "succeeded" else 1)


@cli.command()
def cancel(
    run_id: RunIdArgument,
    reason: Annotated[str | None, typer.Option(help="Why, kept in the run's record.")] = None,
    port: PortOption = DEFAULT_PORT,
    api_url: ApiUrlOption = None,
) -> None:
    """Cancel a run that has not ended: its job is stopped and the run recorded `cancelled`."""
    api = _api(port, api_url)
    with _api_errors():
        record = api.for_run(run_id, lambda full_id: api.cancel(full_id, reason=reason, by=_who())).json()
    console.print(f"Cancelling run [bold]{record['run_id']}[/bold] (status now {record['status']}); "
                  f"`watch {record['run_id']}` follows it to its end.")


@cli.command()
def rerun(run_id: RunIdArgument, port: PortOption = DEFAULT_PORT, api_url: ApiUrlOption = None) -> None:
    """Start a new run of the same uploaded blob version; print the new run's id."""
    api = _api(port, api_url)
    with _api_errors():
        answer = api.for_run(run_id, api.rerun).json()
    console.print(f"Run {answer['rerun_of']} rerun as [bold]{answer['run_id']}[/bold]; "
                  f"`watch {answer['run_id']}` follows it.")


def runs_table(records: list[dict[str, Any]]) -> Table:
    """The `runs` listing: short ids and the status whole on 80 columns; task type and error wrap if long."""
    table = Table(box=None, pad_edge=False, header_style="bold", caption="Times in UTC. `runs RUN_ID` shows one "
                  "run, `runs --json` everything.", caption_justify="left")
    shorts = short_ids(record["run_id"] for record in records)
    table.add_column("run", no_wrap=True, min_width=max((len(short) for short in shorts.values()), default=3))
    table.add_column("status", no_wrap=True, min_width=max(len(status.value) for status in RunStatus))
    table.add_column("task type", overflow="fold")
    table.add_column("requested", no_wrap=True)
    table.add_column("error", overflow="fold")
    for record in records:
        status = str(record["status"])
        shown = f"{status} #{record['queue_position']}" if record.get("queue_position") else status
        table.add_row(
            shorts[record["run_id"]], f"[{_colour(status)}]{shown}[/]", escape(str(record["task_type"])),
            _minutes(record["requested_at"]), escape((record.get("error") or {}).get("code", "")),
        )
    return table


def short_ids(run_ids: Iterable[str]) -> dict[str, str]:
    """Each id cut to one length, SHORT_ID_CHARS or more, at which no two of them are alike."""
    ids = sorted(set(run_ids))
    length = SHORT_ID_CHARS
    while len({run_id[:length] for run_id in ids}) < len(ids):
        length += 1
    return {run_id: run_id[:length] for run_id in ids}


def _minutes(timestamp: str) -> str:
    return datetime.fromisoformat(timestamp).strftime("%m-%d %H:%M")


def _colour(status: str) -> str:
    if status == RunStatus.SUCCEEDED:
        return "green"
    return "red" if RunStatus(status).is_terminal else "yellow"


@cli.command()
def prune(
    keep: Annotated[int, typer.Option(min=0, help="Newest finished ones to keep (runs: DOCKER_KEEP_FINISHED).")] = 0,
) -> None:
    """Remove the finished run containers this checkout created (labels pacta-runner.managed and
    pacta-runner.checkout: this machine and path), and no other."""
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
    console.print("  [green]✓[/green] uploaded")
    record = _follow(RunApi(base_url), run_id, waiting_for="the blob trigger", shown={"uploaded"})
    _print_record(record)
    return record


def _uploads_container() -> ContainerClient:
    """The uploads container (UPLOADS_CONTAINER) in AzureWebJobsStorage, created if missing."""
    service = BlobServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"])
    container = service.get_container_client(os.environ.get("UPLOADS_CONTAINER", "uploads"))
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    return container


def _follow(
    api: RunApi, run_id: str, *, waiting_for: str, shown: set[str] | None = None,
    timeout: float | None = FOLLOW_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Poll the status API, showing each phase as the run reaches it, until the run ends (or `timeout` s pass).

    A run the API does not know yet is waited for (an upload's, before the blob trigger has fired).
    """
    shown = set(shown or ())
    deadline = None if timeout is None else time.monotonic() + timeout
    record: dict[str, Any] = {}
    with console.status(f"waiting for {waiting_for}") as spinner:
        while deadline is None or time.monotonic() < deadline:
            try:
                record = api.get_run(run_id).json()
            except ApiError as exc:
                if exc.code != "run_not_found":
                    raise
            else:
                phase = _phase(record)
                if phase not in shown:
                    shown.add(phase)
                    mark = "[green]✓[/green]" if phase in PHASES or phase == "succeeded" else "[red]✗[/red]"
                    console.print(f"  {mark} {phase}")
                spinner.update(f"{phase} ...")
                if RunStatus(record["status"]).is_terminal:
                    return record
            _pause()
    console.print(f"[red]Run {run_id} did not end within {timeout:.0f} s.[/red]")
    return record


def _pause() -> None:
    """The wait between two polls of `_follow` (a test replaces it to act between polls)."""
    time.sleep(POLL_INTERVAL_SECONDS)


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
        console.print(f"  error            {record['error']['code']}: {escape(record['error']['message'])}")


def _api(port: int, api_url: str | None) -> RunApi:
    return RunApi(api_url or f"http://127.0.0.1:{port}", key=os.environ.get("PACTA_FUNCTION_KEY"))


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """An API error ends the command with its message on stderr and exit code 1."""
    try:
        yield
    except ApiError as exc:
        errors.print(f"[red]{escape(exc.message)}[/red] ({exc.code})")
        raise typer.Exit(1) from None


def _who() -> str:
    """Who asks, for the run's record: the local user name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown user"


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
