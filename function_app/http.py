"""The API's answers: JSON bodies, and one error shape, `{"error": {"code", "message"}}`, for every non-2xx.

Every HTTP blueprint answers through these two functions, so a client (the CLI, a PACTA server) reads any
failure the same way: `code` is stable and snake_case, for machines; `message` says what to do, for people.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import azure.functions as func
from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

JSON = "application/json"
P = ParamSpec("P")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, snake_case cause, e.g. `run_not_found`, `invalid_query`.")
    message: str = Field(description="What went wrong and what to do next, for a person.")


class ErrorAnswer(BaseModel):
    """The body of every non-2xx answer of the API."""

    error: ErrorDetail


def json_response(body: Any, *, status: int = 200) -> func.HttpResponse:
    """`body` as JSON with `status`."""
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=JSON)


def error_response(status: int, code: str, message: str) -> func.HttpResponse:
    """A non-2xx answer in the API's one error shape: `{"error": {"code": code, "message": message}}`."""
    if status < 400:
        raise ValueError(f"status={status} is not an error status (4xx or 5xx)")
    return json_response(ErrorAnswer(error=ErrorDetail(code=code, message=message)).model_dump(), status=status)


def failures_answered_by(
    fallback: Callable[[], func.HttpResponse],
) -> Callable[[Callable[P, Awaitable[func.HttpResponse]]], Callable[P, Awaitable[func.HttpResponse]]]:
    """A decorator: an unexpected exception of the handler is logged and answered with `fallback()`, not the
    host's bare 500. Apply it innermost (just above `async def`): `functools.wraps` keeps the signature the
    worker binds by."""

    def decorate(handler: Callable[P, Awaitable[func.HttpResponse]]) -> Callable[P, Awaitable[func.HttpResponse]]:
        @functools.wraps(handler)
        async def answer(*args: P.args, **kwargs: P.kwargs) -> func.HttpResponse:
            try:
                return await handler(*args, **kwargs)
            except Exception:
                logger.exception("HTTP function %s failed", handler.__name__)
                return fallback()

        return answer

    return decorate


# A 500 in the error shape.
errors_as_json = failures_answered_by(lambda: error_response(
    500, "internal_error", "The API could not answer this request; the app's log has the details."
))
