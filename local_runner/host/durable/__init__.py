"""The in-process host's durable engine: Durable Functions orchestrations without the extension.

It drives the app's orchestrators through the real SDK (azure-functions-durable 1.7) with history
in the extension's wire form, keeps instances in Azurite blobs, runs activities on a thread pool,
fires timers by the host's `Clock`, delivers external events, retries activities as DTFx does,
continues as new, and fails an instance whose code no longer replays its history. `api.py` serves
the extension's HTTP API for `DurableOrchestrationClient`.

Modules: history (events, request JSON, a test builder) -> actions (replies, effects, determinism)
-> state / store (the instance and its blob) -> episode (pure transitions) -> engine (threads,
locks, write-through) -> api (HTTP).
"""

from local_runner.host.durable.engine import ActivityRunner, OrchestrationEngine
from local_runner.host.durable.errors import (
    DurableHostError,
    InstanceExistsError,
    InstanceGoneError,
    InstanceNotFoundError,
    OrchestratorNotFoundError,
    StoreConflictError,
)
from local_runner.host.durable.state import RuntimeStatus
from local_runner.host.durable.store import InstanceStore

__all__ = [
    "ActivityRunner",
    "DurableHostError",
    "InstanceExistsError",
    "InstanceGoneError",
    "InstanceNotFoundError",
    "InstanceStore",
    "OrchestrationEngine",
    "OrchestratorNotFoundError",
    "RuntimeStatus",
    "StoreConflictError",
]
