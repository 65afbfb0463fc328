"""Completion messages from the runner: validate, authenticate, and raise `RunnerCompleted`.

A message that cannot be used is logged with the reason and dropped (returning normally deletes it
from the queue): retrying a malformed or unauthenticated message can never succeed, and would only
walk it to the poison queue. Storage errors do raise, so the queue retries them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opentelemetry.trace import SpanKind
from pydantic import SecretStr, ValidationError

from orchestrations import telemetry
from orchestrations.callback_tokens import is_valid_token
from orchestrations.contracts import RUNNER_COMPLETED_EVENT, RunnerCompletion, RunnerEvent, RunRecord
from orchestrations.log_context import bind_execution_ref, run_context
from orchestrations.run_store import RunNotFoundError, RunStore

logger = logging.getLogger(__name__)

# DurableOrchestrationClient.raise_event raises a plain Exception with these texts for 404 and 410.
_INSTANCE_GONE_MARKERS = ("No instance with ID", "is gone")


async def handle_runner_message(body: str, client: Any, *, run_store: RunStore, token_key: SecretStr) -> bool:
    """Deliver one completion message to its orchestration; returns whether it was delivered."""
    try:
        event = RunnerEvent.from_payload(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        logger.warning("Rejected a runner message that is not a valid RunnerEvent: %s", problems[:1000])
        return False
    with run_context(event.run_id):
        return await _deliver(event, client, run_store=run_store, token_key=token_key)


async def _deliver(event: RunnerEvent, client: Any, *, run_store: RunStore, token_key: SecretStr) -> bool:
    try:
        # Off the event loop: the worker runs a batch of messages at once, and a slow lookup must not hold the rest.
        record = await asyncio.to_thread(run_store.get_run, event.run_id)
    except RunNotFoundError:
        logger.warning("Dropped a runner message for unknown run %s", event.run_id)
        return False
    # A span of the run's trace only once the record vouches for the run (not for a forged run id).
    with telemetry.run_span("completion", event.run_id, traceparent=record.traceparent, kind=SpanKind.CONSUMER,
                            attributes={telemetry.EXECUTION_REF_ATTRIBUTE: record.execution_ref}) as span:
        delivered = await _deliver_to(record, event, client, token_key=token_key)
        span.set_attribute("pacta.completion.delivered", delivered)
        return delivered


async def _deliver_to(record: RunRecord, event: RunnerEvent, client: Any, *, token_key: SecretStr) -> bool:
    if record.execution_ref:
        bind_execution_ref(record.execution_ref)
    if not is_valid_token(token_key, event.run_id, event.attempt, event.token):
        logger.warning("Dropped a runner message for run %s: its callback token does not match", event.run_id)
        return False
    if event.attempt != record.attempt:
        logger.warning("Dropped a runner message for run %s: it is from attempt %d, the run is at attempt %d",
                       event.run_id, event.attempt, record.attempt)
        return False
    if record.status.is_terminal:
        logger.info("Dropped a runner message for run %s: it already ended %s", event.run_id,
                    record.status.value)
        return False
    try:
        await client.raise_event(event.run_id, RUNNER_COMPLETED_EVENT, RunnerCompletion.from_event(event).to_payload())
    except Exception as exc:
        if any(marker in str(exc) for marker in _INSTANCE_GONE_MARKERS):
            logger.info("Dropped a runner message for run %s: %s", event.run_id, exc)
            return False
        raise
    logger.info("Run %s reported %s", event.run_id, event.status.value)
    return True
