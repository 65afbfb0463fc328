"""`LocalHost`: the app's functions, running in this process as the Functions host would run them.

    with LocalHost.from_app_dir(Path(".")) as host:   # reads host.json; env from local.settings.json
        print(host.base_url)                          # HTTP functions and the durable API

Start order: invoker, engine, HTTP server, trigger pollers; stop in reverse. Durable state lives in
Azurite (the `AzureWebJobsStorage` connection), so a restarted host resumes its runs.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from local_runner.host.clock import Clock, SystemClock
from local_runner.host.durable import InstanceStore, OrchestrationEngine
from local_runner.host.durable.api import create_durable_api
from local_runner.host.functions import (
    ACTIVITY_TRIGGER,
    BLOB_TRIGGER,
    ORCHESTRATION_TRIGGER,
    QUEUE_TRIGGER,
    DurableClientBinding,
    FunctionIndex,
    IndexedFunction,
    Invoker,
    load_function_index,
)
from local_runner.host.http import HttpServer
from local_runner.host.settings import HostSettings, QueueSettings, default_host_id, load_host_settings
from local_runner.host.triggers import BlobTriggerPoller, QueueTriggerPoller, TriggerPoller
from orchestrations.errors import ConfigurationError

logger = logging.getLogger(__name__)

STORAGE_CONNECTION_SETTING = "AzureWebJobsStorage"
# The longest wait between two listings of a blob trigger's container when nothing new was found (it goes
# back to 100 ms once something was): short, because locally nobody wants to wait for an upload to be noticed,
# and an idle pass lists only names (a container of many uploads is listed less often: `idle_scan_delay`).
# Azurite has neither the storage logs nor the change feed the Functions host could follow instead.
DEFAULT_POLL_INTERVAL_SECONDS = 0.1


def exempt_start_up_objects_from_gc() -> None:
    """Collect once, then keep every object alive now (the modules, the indexed functions, the clients) out of
    the cyclic collector's passes, for a long-running host: its full passes then look only at what came since.

    Over a burst of 100 uploads the host ran four full passes of about 65 ms each over some 110,000 start-up
    objects; frozen, the four took 30 ms in all. Reference counting still frees those objects; only a cycle
    among them that becomes garbage stays. Not for a process that starts many hosts (the tests): each start
    would freeze the garbage of the hosts before it.
    """
    gc.collect()
    gc.freeze()


class LocalHost:
    def __init__(
        self,
        app_dir: Path,
        *,
        clock: Clock | None = None,
        http_port: int = 0,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        activity_overrides: Mapping[str, Callable[[str | None], str]] | None = None,
        queue_settings: QueueSettings | None = None,
    ) -> None:
        """`activity_overrides` replaces activities by name (input JSON -> result JSON), as
        Temporal's tests register a stub under an activity's name; `queue_settings` replaces host.json's
        `extensions.queues` (a test of retries need not wait minutes). Production passes neither."""
        self.app_dir = app_dir.resolve()
        self.clock: Clock = clock or SystemClock()
        self._http_port = http_port
        self._poll_interval = poll_interval
        self._stopped = threading.Event()
        self._activity_overrides = dict(activity_overrides or {})
        self.settings: HostSettings = load_host_settings(self.app_dir)
        if queue_settings is not None:
            self.settings = dataclasses.replace(self.settings, queues=queue_settings)
        self.functions: FunctionIndex = load_function_index(self.app_dir)
        self._connection = _setting(STORAGE_CONNECTION_SETTING)
        self.invoker = Invoker(durable_client=self._client_binding)
        self.engine = OrchestrationEngine(
            InstanceStore.from_connection_string(self._connection, self.settings.hub_name),
            orchestrators={
                fn.name: self._orchestrator(fn) for fn in self.functions.list_by_trigger(ORCHESTRATION_TRIGGER)
            },
            run_activity=self._run_activity,
            clock=self.clock,
            task_hub=self.settings.hub_name,
            activity_workers=self.settings.max_concurrent_activity_functions,
            orchestrator_workers=self.settings.max_concurrent_orchestrator_functions,
        )
        self.http = HttpServer(
            self.functions, self.invoker, port=http_port, route_prefix=self.settings.http_route_prefix,
            durable_api=create_durable_api(self.engine),
        )
        self.pollers: list[TriggerPoller] = self._pollers()

    @classmethod
    def from_app_dir(cls, app_dir: Path, **options: object) -> LocalHost:
        return cls(app_dir, **options)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def start(self) -> LocalHost:
        self.invoker.start()
        self.http.start()  # first: the activities the engine resumes call the durable client, which is HTTP
        self.engine.start()
        for poller in self.pollers:
            poller.start()
        logger.info("Host started: %d functions, HTTP on %s", len(self.functions.names), self.base_url)
        return self

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        self.http.stop()
        self.engine.stop()
        self.invoker.stop()
        self._stopped.set()

    def wait(self) -> None:
        """Block until `stop` is called (from another thread or a signal handler)."""
        while not self._stopped.wait(1.0):
            pass

    def poll_triggers_once(self) -> int:
        """One pass of every trigger poller; for tests that drive the host step by step."""
        return sum(poller.poll_once() for poller in self.pollers)

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _client_binding(self) -> DurableClientBinding:
        return DurableClientBinding(self.settings.hub_name, self.http.port)

    def _orchestrator(self, function: IndexedFunction) -> Callable[[str], str]:
        def run_episode(context_json: str) -> str:
            return self.invoker.invoke_orchestrator(function, context_json)

        return run_episode

    def _run_activity(self, name: str, input_json: str | None) -> str:
        if name in self._activity_overrides:
            return self._activity_overrides[name](input_json)
        function = self.functions.get(name)
        if function.trigger.type != ACTIVITY_TRIGGER:
            raise ConfigurationError("not_an_activity", f"{name} is a {function.trigger.type}, not an activity.")
        return self.invoker.invoke_activity(function, input_json or "null")

    def _pollers(self) -> list[TriggerPoller]:
        host_id = default_host_id(self.app_dir)
        pollers: list[TriggerPoller] = []
        for function in self.functions.list_by_trigger(BLOB_TRIGGER):
            pollers.append(BlobTriggerPoller(
                self._binding_connection(function), function, self.invoker, self.clock,
                host_id=host_id, interval=self._poll_interval,
                max_attempts=self.settings.queues.max_dequeue_count,
                message_encoding=self.settings.queues.message_encoding,
                batch_size=self.settings.queues.batch_size,
                new_batch_threshold=self.settings.queues.new_batch_threshold,
            ))
        for function in self.functions.list_by_trigger(QUEUE_TRIGGER):
            # Polled as the Functions host polls (host.json, its back-off and maxPollingInterval), not faster.
            pollers.append(QueueTriggerPoller(
                self._binding_connection(function), function, self.invoker, self.clock,
                host_settings=self.settings,
            ))
        return pollers

    @staticmethod
    def _binding_connection(function: IndexedFunction) -> str:
        return _setting(str(function.trigger.raw.get("connection") or STORAGE_CONNECTION_SETTING))


def _setting(name: str) -> str:
    value = os.environ.get(name) or os.environ.get(f"AzureWebJobs{name}")
    if not value:
        raise ConfigurationError(
            "missing_connection", f"The connection setting {name} is not set (local.settings.json Values)."
        )
    return value
