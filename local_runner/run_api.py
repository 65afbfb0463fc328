"""A small client of the app's HTTP API (function_app/api.py, /api/openapi.json) for the developer CLI.

Works against the in-process host (no key needed) and against a deployed app: give its base URL and a
function key (the CLI reads PACTA_API_URL and PACTA_FUNCTION_KEY). Every failure is an `ApiError` carrying
the API's `{"error": {"code", "message"}}`, or one made up here when nothing, or something else, answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from orchestrations.queries import MAX_LIST_LIMIT

REQUEST_TIMEOUT_SECONDS = 10.0


class ApiError(Exception):
    """The API refused or failed; `code` and `message` as in the API's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class RunApi:
    """The runs API at `base_url` (`http://127.0.0.1:7071`, `https://<app>.azurewebsites.net`)."""

    def __init__(self, base_url: str, *, key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"x-functions-key": key} if key else {}

    def get_run(self, run_id: str) -> requests.Response:
        return self._request("GET", f"runs/{run_id}")

    def list_runs(self, *, status: str | None = None, limit: int | None = None) -> requests.Response:
        params = {key: str(value) for key, value in {"status": status, "limit": limit}.items() if value is not None}
        return self._request("GET", "runs", params=params)

    def get_log(self, run_id: str) -> requests.Response:
        return self._request("GET", f"runs/{run_id}/log")

    def cancel(self, run_id: str, *, reason: str | None, by: str) -> requests.Response:
        body = {"by": by} | ({"reason": reason} if reason else {})
        return self._request("POST", f"runs/{run_id}/cancel", json=body)

    def rerun(self, run_id: str) -> requests.Response:
        return self._request("POST", f"runs/{run_id}/rerun")

    def for_run(self, run_id: str, call: Callable[[str], requests.Response]) -> requests.Response:
        """`call(run_id)`; when the API knows no such run, `call` on the one run whose id starts with `run_id`
        (among the newest MAX_LIST_LIMIT), as `runs` shows ids shortened."""
        try:
            return call(run_id)
        except ApiError as exc:
            if exc.code != "run_not_found":
                raise
        runs = self.list_runs(limit=MAX_LIST_LIMIT).json()["runs"]
        matches = [str(run["run_id"]) for run in runs if str(run["run_id"]).startswith(run_id)]
        if not matches:
            raise ApiError(404, "run_not_found",
                           f"No run {run_id!r}, and no id of the {MAX_LIST_LIMIT} newest runs starts with it.")
        if len(matches) > 1:
            raise ApiError(400, "ambiguous_run_id",
                           f"{run_id!r} starts the ids of {len(matches)} runs ({', '.join(matches[:5])}"
                           f"{', ...' if len(matches) > 5 else ''}): give more of the id.")
        return call(matches[0])

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}/api/{path}"
        try:
            response = requests.request(method, url, headers=self._headers, timeout=REQUEST_TIMEOUT_SECONDS,
                                        **kwargs)
        except requests.ConnectionError:
            raise ApiError(0, "api_unreachable", f"Nothing answers on {self.base_url}: start the host with "
                                                 "`make up`, or point PACTA_API_URL at the app.") from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response


def _error_of(response: requests.Response) -> ApiError:
    status = response.status_code
    try:
        error = response.json()["error"]
        return ApiError(status, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        pass
    if status == 401:
        return ApiError(status, "unauthorized", "The app refused the function key: set PACTA_FUNCTION_KEY to one "
                                                "of its keys (`az functionapp keys list`).")
    return ApiError(status, f"http_{status}", f"{response.request.method} {response.url} answered {status} "
                                              f"{response.reason}: {response.text[:200]}")
