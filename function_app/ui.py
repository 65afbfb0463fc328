"""The runs pages, for people: `GET /api/ui/runs` (recent runs; `?status=`, `?limit=`) and `GET /api/ui/runs/{run_id}`.

Server-rendered HTML (Jinja2, autoescaped, templates in function_app/templates/) from the query functions the JSON
API answers from. A page never holds a storage URL with a key: the log is linked at `GET /api/runs/{run_id}/log`
and its tail, like the result document, is read server-side from the run's own folder (orchestrations/queries.py).
Cancel and rerun are forms that post to the API's own routes; a small script sends them as JSON, with the page's
`code` as `x-functions-key`. Without the script every page still shows everything, and the forms still post.

The routes are under `ui/`, not `runs/ui`: the Functions host tries routes in the order it lists the functions,
not the most specific first, so `runs/ui` could be answered by `runs/{run_id}` (local_runner/host/http.py).
Run with the rest of the app: `make up`, then open http://localhost:7071/api/ui/runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import azure.durable_functions as df
import azure.functions as func
import jinja2

from function_app.http import failures_answered_by
from function_app.openapi import ROUTE_PREFIX
from orchestrations import queries, runtime
from orchestrations.contracts import MAX_CANCEL_REASON_CHARS, RunStatus
from orchestrations.queries import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from orchestrations.run_store import RunNotFoundError

logger = logging.getLogger(__name__)

bp = df.Blueprint()

# A page shows the log's last lines only; the whole log is one link away.
LOG_TAIL_LINES = 200
# A result document longer than this is named, not shown (a part of a JSON document is not one).
MAX_RESULT_BYTES = 256 * 1024
# The pages' own order of a run's life. The orchestrator's `custom_status.phase` (orchestrations/run_task.py)
# maps onto it; `stopping` comes after running (a cancel, or a job that ended), `reading_result` is recording.
PHASES = ("uploaded", "queued", "starting", "running", "recording", "ended")
_CUSTOM_PHASES = {
    "queued": "queued", "starting": "starting", "running": "running", "stopping": "running",
    "reading_result": "recording", "recording": "recording", "done": "ended",
}
_PHASE_TEXT = {"done": "done", "now": "now", "next": "not reached yet", "skipped": "skipped"}
_PHASE_SYMBOLS = {"done": "✓", "now": "▶", "next": "○", "skipped": "-"}
_STATUS_SYMBOLS = {
    "queued": "…", "starting": "…", "running": "▶", "succeeded": "✓", "failed": "✗", "timed_out": "✗",
    "cancelled": "⊘", "rejected": "⊘",
}


@dataclass(frozen=True)
class Links:
    """URLs of the app's routes, carrying the function key (`code`) the page was opened with, if any, so that
    following a link works in Azure without a script. The key is the caller's own, already in the address bar."""

    key: str | None

    def path(self, route: str) -> str:
        return f"/{ROUTE_PREFIX}/{quote(route)}"

    def page(self, route: str, **params: str) -> str:
        return self._with_key(self.path(route), params)

    def api(self, route: str) -> str:
        return self._with_key(self.path(route), {})

    def _with_key(self, url: str, params: dict[str, str]) -> str:
        query = {name: value for name, value in params.items() if value} | ({"code": self.key} if self.key else {})
        return f"{url}?{urlencode(query)}" if query else url


def _display_time(iso: str) -> str:
    """`2026-12-06T11:02:03.456+00:00` as `2026-12-06 11:02:03 UTC` (the records' times are UTC)."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)
_TEMPLATES.filters["display_time"] = _display_time
_TEMPLATES.globals |= {"status_symbols": _STATUS_SYMBOLS, "phase_symbols": _PHASE_SYMBOLS}


# A 500 page.
errors_as_page = failures_answered_by(
    lambda: _page("error.html", Links(None), status=500, heading="Something went wrong",
                  message="The app could not show this page; its log has the details.")
)


@bp.route(route="ui/runs", methods=["GET"])
@bp.durable_client_input(client_name="client")
@errors_as_page
async def runs_page(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    links = Links(req.params.get("code"))
    status = req.params.get("status") or None
    text = req.params.get("limit") or str(DEFAULT_LIST_LIMIT)
    shown: dict[str, Any] = {"statuses": [s.value for s in RunStatus], "status_filter": status, "limit": text,
                             "max_limit": MAX_LIST_LIMIT, "runs": [], "problem": None}
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_LIMIT:
        problem = f"“At most” must be a whole number from 1 to {MAX_LIST_LIMIT}, not {text!r}."
        return _page("runs.html", links, status=400, **shown | {"problem": problem})
    try:
        runs = await queries.list_runs(client, runtime.run_store(), status=status, limit=int(text))
    except queries.InvalidQueryError as exc:
        return _page("runs.html", links, status=400, **shown | {"problem": f"{exc.message}."})
    return _page("runs.html", links, **shown | {"runs": runs})


@bp.route(route="ui/runs/{run_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@errors_as_page
async def run_page(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    run_id = req.route_params["run_id"]
    links = Links(req.params.get("code"))
    run_store = runtime.run_store()
    view = await queries.describe_run(run_id, client, run_store=run_store)
    if view is None:
        return _page("error.html", links, status=404, heading="No such run",
                     message=f"There is no run {run_id!r}; the list of runs has the recent ones.")
    log, log_cut, log_note = await asyncio.to_thread(_log_tail, run_id, run_store)
    result, result_note = await asyncio.to_thread(_result, run_id, run_store)
    return _page(
        "run.html", links, run=view, phases=timeline(view), actions=actions(view), max_reason=MAX_CANCEL_REASON_CHARS,
        log=log, log_cut=log_cut, log_lines=LOG_TAIL_LINES, log_note=log_note, result=result, result_note=result_note,
    )


def actions(view: dict[str, Any]) -> list[str]:
    """What the run's page offers: cancel until it ended, rerun once it ended (a rejected upload is never rerun)."""
    status = RunStatus(view["status"])
    if not status.is_terminal:
        return ["cancel"]
    return [] if status is RunStatus.REJECTED else ["rerun"]


def timeline(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's phases in order, each `done`, `now`, `next` (not reached yet) or `skipped`, with the time the
    record has for it (uploaded: requested, running: started, ended: finished) and a detail where there is one."""
    status = RunStatus(view["status"])
    custom = (view.get("orchestration") or {}).get("custom_status")
    phase = custom.get("phase") if isinstance(custom, dict) else None
    # The record and the orchestration's custom status are written at different moments: the later of the two.
    current = "ended" if status.is_terminal else status.value
    reached = max(PHASES.index(current), PHASES.index(_CUSTOM_PHASES.get(str(phase), current)))
    never_started = view.get("started_at") is None
    times = {"uploaded": view.get("requested_at"), "running": view.get("started_at"), "ended": view.get("finished_at")}
    details = {
        "queued": f"place {view['queue_position']} in line" if view.get("queue_position") else None,
        "ended": status.value if status.is_terminal else None,
    }
    steps = []
    for index, name in enumerate(PHASES):
        if index > reached:
            state = "next"
        elif _skipped(name, status, never_started=never_started):
            state = "skipped"
        else:
            state = "now" if index == reached and not status.is_terminal else "done"
        steps.append({"name": name, "state": state, "state_text": _PHASE_TEXT[state], "current": index == reached,
                      "time": times.get(name), "detail": details.get(name)})
    return steps


def _skipped(phase: str, status: RunStatus, *, never_started: bool) -> bool:
    """A rejected upload never went further; a run that ended without a job never started or ran one."""
    if status is RunStatus.REJECTED:
        return phase not in {"uploaded", "ended"}
    return status.is_terminal and never_started and phase in {"starting", "running"}


def _log_tail(run_id: str, run_store: Any) -> tuple[str | None, bool, str]:
    """The log's last LOG_TAIL_LINES lines, whether it had more, or None and why there is none to show."""
    try:
        lines = queries.get_run_log(run_id, run_store=run_store).decode("utf-8", errors="replace").splitlines()
    except (queries.LogNotFoundError, RunNotFoundError) as exc:
        return None, False, str(getattr(exc, "message", exc))
    return "\n".join(lines[-LOG_TAIL_LINES:]), len(lines) > LOG_TAIL_LINES, ""


def _result(run_id: str, run_store: Any) -> tuple[str | None, str]:
    """The result document as text, or None and why there is none to show."""
    try:
        body = queries.get_run_result(run_id, run_store=run_store, max_bytes=MAX_RESULT_BYTES)
    except (queries.ResultNotFoundError, RunNotFoundError) as exc:
        return None, str(getattr(exc, "message", exc))
    text = body.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False), ""
    except ValueError:  # shown as it is: the page is no judge of the document
        return text, ""


def _page(template: str, links: Links, *, status: int = 200, **context: Any) -> func.HttpResponse:
    # The page may carry the caller's function key in its links: not cached, and no script runs but the page's own
    # (its one <style> and <script> carry this answer's nonce), so markup that got past the escaping could not
    # read the key; nor may another site frame the page's buttons.
    nonce = secrets.token_urlsafe(18)
    html = _TEMPLATES.get_template(template).render(links=links, csp_nonce=nonce, **context)
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return func.HttpResponse(html, status_code=status, mimetype="text/html", charset="utf-8", headers={
        "Cache-Control": "no-store", "Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
    })
