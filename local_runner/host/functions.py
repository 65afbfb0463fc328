"""The app's functions: found as the Python worker finds them, and called as the worker calls them.

`load_function_index(app_dir)` follows the worker's indexing (azure_functions_worker `loader.py`):
the entry file named by `PYTHON_SCRIPT_FILE_NAME` (default `function_app.py`) must be a plain `.py`
file in the app root, its module must hold exactly one `FunctionRegister`, and `get_functions()`
lists what it registered. Parameters are checked against bindings as the worker's registry does.

An `Invoker` then calls them: each trigger kind has a builder for the value the worker would pass
(`blob_trigger_input`, `queue_trigger_input`, `http_trigger_input`, ...), `durableClient`
bindings get the JSON the Durable extension hands out (`DurableClientBinding`), and every
invocation is logged as the Functions host logs it.

SDK-type bindings (deferred bindings: a blob trigger parameter typed `BlobClient` from
azurefunctions-extensions-bindings-blob) work as in the worker: a binding is deferred when its type
has a converter in the extensions' registry and its parameter's annotation is an `SdkType`
(`Binding.sdk_type`). The host then sends no content but a reference (`blob_reference_input`: the
host's `ModelBindingData`), and the invoker has the extension's converter turn it into the client.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import functools
import importlib
import inspect
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.blob import InputStream
from azure.functions.durable_functions import (
    ActivityTriggerConverter,
    OrchestrationTriggerConverter,
)
from azure.functions.http import HttpRequest
from azure.functions.queue import QueueMessage
from azurefunctions.extensions.base import Datum, get_binding_registry

from local_runner.host.durable.api import DEFAULT_CONNECTION, client_binding_json
from orchestrations.errors import ConfigurationError

logger = logging.getLogger(__name__)

SCRIPT_FILE_SETTING = "PYTHON_SCRIPT_FILE_NAME"
DEFAULT_SCRIPT_FILE = "function_app.py"
# The worker's own check (azure_functions_worker/utils/validators.py): a plain file in the app root.
_SCRIPT_FILE_NAME = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_\-]*\.py$")

BLOB_TRIGGER = "blobTrigger"
QUEUE_TRIGGER = "queueTrigger"
HTTP_TRIGGER = "httpTrigger"
ORCHESTRATION_TRIGGER = "orchestrationTrigger"
ACTIVITY_TRIGGER = "activityTrigger"
DURABLE_CLIENT = "durableClient"
DURABLE_WEBHOOK_PATH = "/runtime/webhooks/durabletask"
# What the Storage extension puts in a blob binding's ModelBindingData (its BlobParameterBindingData).
BLOB_REFERENCE_SOURCE = "AzureStorageBlobs"


class FunctionLoadError(ConfigurationError):
    """The app cannot be indexed, or a function cannot be loaded, as the worker would refuse it."""

    def __init__(self, message: str) -> None:
        super().__init__("function_load_error", message)


class FunctionNotFoundError(LookupError):
    """No indexed function has the requested name."""


# ------------------------------------------------------------------------------------- indexing


@dataclass(frozen=True)
class Binding:
    """One binding of a function, as `get_raw_bindings()` describes it."""

    name: str
    type: str
    direction: str
    raw: Mapping[str, Any]
    # The SDK type its parameter asks for (a deferred binding: the host passes a reference), else None.
    sdk_type: builtins.type | None = None


@dataclass(frozen=True)
class IndexedFunction:
    """A function the worker would register: its name, trigger, bindings and the callable."""

    name: str
    trigger: Binding
    bindings: tuple[Binding, ...]
    user_function: Callable[..., Any]
    requires_context: bool = False

    @property
    def is_async(self) -> bool:
        """True for `async def` functions (including every `durable_client_input` function)."""
        return inspect.iscoroutinefunction(self.user_function)

    def bindings_of_type(self, binding_type: str) -> tuple[Binding, ...]:
        return tuple(b for b in self.bindings if b.type == binding_type)


class FunctionIndex:
    """The indexed functions of one app, looked up by name or trigger type."""

    def __init__(self, functions: list[IndexedFunction], *, entry_file: Path) -> None:
        self.entry_file = entry_file
        self._by_name = {f.name: f for f in functions}

    def __iter__(self) -> Iterator[IndexedFunction]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> IndexedFunction:
        """The function called `name`; FunctionNotFoundError naming the known ones if absent."""
        try:
            return self._by_name[name]
        except KeyError:
            raise FunctionNotFoundError(
                f"No function {name!r} in {self.entry_file.name}; indexed: {sorted(self._by_name)}"
            ) from None

    def list_by_trigger(self, trigger_type: str) -> list[IndexedFunction]:
        """Functions whose trigger has this type ("blobTrigger", "queueTrigger", ...)."""
        return [f for f in self._by_name.values() if f.trigger.type == trigger_type]


def load_function_index(
    app_dir: Path, *, environ: Mapping[str, str] | None = None
) -> FunctionIndex:
    """Import the app's entry module afresh and index its functions as the Python worker does."""
    app_dir = Path(app_dir).resolve()
    env = os.environ if environ is None else environ
    script_file = env.get(SCRIPT_FILE_SETTING) or DEFAULT_SCRIPT_FILE
    if not _SCRIPT_FILE_NAME.match(script_file):
        raise FunctionLoadError(
            f"Invalid file name: {script_file} ({SCRIPT_FILE_SETTING} must name a .py file in the "
            "app root, without directories)."
        )
    entry = app_dir / script_file
    if not entry.is_file():
        raise FunctionLoadError(
            f"{entry} does not exist. The worker would fall back to legacy function.json indexing "
            f"and find no v2 functions: create it, or set {SCRIPT_FILE_SETTING} to the entry file."
        )
    module = _import_fresh(app_dir, entry.stem)
    registers = [
        value
        for attribute in module.__dir__()
        if isinstance(value := getattr(module, attribute, None), func.FunctionRegister)
    ]
    if not registers:
        raise FunctionLoadError(
            f"Could not find top level function app instances in {script_file}."
        )
    if len(registers) > 1:
        raise FunctionLoadError(
            f"More than one {registers[0].__class__.__name__} or other top level function app "
            f"instances are defined (in {script_file})."
        )
    # get_functions() can run once per app object: a second call fails on "unique function name".
    functions = [_indexed(f) for f in registers[0].get_functions()]
    logger.info(
        "Indexed %d functions from %s: %s", len(functions), entry, [f.name for f in functions]
    )
    return FunctionIndex(functions, entry_file=entry)


def _import_fresh(app_dir: Path, module_name: str) -> Any:
    for name in list(sys.modules):
        if name in (module_name, "function_app") or name.startswith("function_app."):
            del sys.modules[name]
    while str(app_dir) in sys.path:
        sys.path.remove(str(app_dir))
    sys.path.insert(0, str(app_dir))
    importlib.invalidate_caches()
    if module_name == "function_app" and (app_dir / "function_app").is_dir():
        logger.warning(
            "%s/function_app/ shadows function_app.py: Python imports the package, as the worker "
            "does. Rename the entry file and set %s.",
            app_dir,
            SCRIPT_FILE_SETTING,
        )
    return importlib.import_module(module_name)


def _indexed(function: func.decorators.function_app.Function) -> IndexedFunction:
    name = function.get_function_name() or "?"
    user_function = function.get_user_function()
    annotations = {
        param.name: param.annotation
        for param in inspect.signature(user_function, eval_str=True).parameters.values()
    }
    bindings = tuple(
        Binding(
            name=raw["name"], type=raw["type"], direction=str(raw["direction"]).upper(), raw=raw,
            sdk_type=_sdk_type(raw["type"], str(raw["direction"]).upper(), annotations.get(raw["name"])),
        )
        for raw in (json.loads(text) for text in function.get_raw_bindings())
    )
    declared = function.get_trigger()
    trigger = next((b for b in bindings if declared is not None and b.name == declared.name), None)
    if trigger is None:
        raise FunctionLoadError(f"cannot load the {name} function: it has no trigger binding.")
    return IndexedFunction(
        name=name,
        trigger=trigger,
        bindings=bindings,
        user_function=user_function,
        requires_context=_check_parameters(name, user_function, bindings),
    )


def _sdk_type(binding_type: str, direction: str, annotation: Any) -> type | None:
    """The SDK type of a deferred binding, decided as the worker and the extensions decide it
    (azurefunctions-extensions-base `Binding.get_dict_repr`: SupportsDeferredBinding)."""
    registry = get_binding_registry()
    if direction != "IN" or registry.get(binding_type) is None or not registry.check_supported_type(annotation):
        return None
    return annotation


def _check_parameters(
    name: str, user_function: Callable[..., Any], bindings: tuple[Binding, ...]
) -> bool:
    """The worker registry's check: parameters and bindings match; True if `context` is wanted."""
    signature = inspect.signature(user_function, eval_str=True)
    params = set(signature.parameters)
    bound = {b.name for b in bindings if b.name != "$return"}
    requires_context = "context" in params and "context" not in bound
    if requires_context:
        params.discard("context")
        annotation = signature.parameters["context"].annotation
        is_context = isinstance(annotation, type) and annotation.__name__ == "Context"
        if annotation is not inspect.Parameter.empty and not is_context:
            raise FunctionLoadError(
                f'cannot load the {name} function: the "context" parameter is expected to be of '
                f'type azure.functions.Context, got "{annotation!r}" (a durable trigger binding '
                "named other than `context` leaves the SDK's `context` parameter unbound)"
            )
    if params - bound:
        raise FunctionLoadError(
            f"cannot load the {name} function: the following parameters are declared in Python "
            f"but not in the function definition (function.json or function decorators): "
            f"{params - bound!r}"
        )
    if bound - params:
        raise FunctionLoadError(
            f"cannot load the {name} function: the following parameters are declared in the "
            f"function definition (function.json or function decorators) but not in Python: "
            f"{bound - params!r}"
        )
    return requires_context


# ------------------------------------------------------------------------ trigger input builders


def blob_trigger_input(
    *,
    container: str,
    blob_name: str,
    data: bytes,
    uri: str,
    etag: str,
    content_type: str | None,
    last_modified: datetime | None,
    metadata: Mapping[str, str],
) -> InputStream:
    """The `func.InputStream` a blob trigger receives: the whole blob, named `container/blob`."""
    properties = {
        "ETag": '"' + etag.strip('"') + '"',
        "Length": len(data),
        "ContentType": content_type,
        "LastModified": last_modified.isoformat() if last_modified else None,
        "BlobType": "BlockBlob",
    }
    return InputStream(
        data=data,
        name=f"{container}/{blob_name}",
        uri=uri,
        length=len(data),
        blob_properties=properties,
        metadata=dict(metadata),
    )


@dataclass(frozen=True)
class ModelBindingData:
    """The reference the host sends for a deferred binding (FunctionRpc.proto `ModelBindingData`)."""

    version: str
    source: str
    content_type: str
    content: str


def blob_reference_input(*, connection: str, container: str, blob_name: str) -> ModelBindingData:
    """What a blob trigger bound to an SDK type receives: the blob's address and the connection
    setting's name, never its content (the Storage extension's BlobParameterBindingData)."""
    address = {"Connection": connection, "ContainerName": container, "BlobName": blob_name}
    return ModelBindingData(
        version="1.0", source=BLOB_REFERENCE_SOURCE, content_type="application/json", content=json.dumps(address)
    )


def sdk_binding_input(binding: Binding, reference: ModelBindingData) -> Any:
    """The client a deferred binding's parameter gets: the extension's converter decodes the reference,
    as the worker has it do (`deferred_bindings_decode`)."""
    converter = get_binding_registry().get(binding.type)
    datum = Datum(value=reference, type="model_binding_data")
    return converter.decode(datum, trigger_metadata={}, pytype=binding.sdk_type)


def queue_trigger_input(
    *,
    id: str,
    body: bytes,
    dequeue_count: int,
    expiration_time: datetime | None,
    insertion_time: datetime | None,
    time_next_visible: datetime | None,
    pop_receipt: str | None,
) -> QueueMessage:
    """The `func.QueueMessage` a queue trigger receives; `body` already decoded per host.json."""
    return QueueMessage(
        id=id,
        body=body,
        dequeue_count=dequeue_count,
        expiration_time=expiration_time,
        insertion_time=insertion_time,
        time_next_visible=time_next_visible,
        pop_receipt=pop_receipt,
    )


def http_trigger_input(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    route_params: Mapping[str, str],
    body: bytes,
) -> HttpRequest:
    """The `func.HttpRequest` an HTTP trigger receives."""
    return HttpRequest(
        method=method,
        url=url,
        headers=dict(headers),
        params=dict(params),
        route_params=dict(route_params),
        body_type="bytes",
        body=body,
    )


def http_trigger_output(result: Any) -> func.HttpResponse:
    """The worker's `$return` conversion: an HttpResponse as is, a str as a 200 text body."""
    if isinstance(result, func.HttpResponse):
        return result
    if isinstance(result, str):
        return func.HttpResponse(result)
    raise TypeError(f"an HTTP function must return func.HttpResponse or str, got {type(result)}")


def activity_trigger_input(input_json: str) -> Any:
    """Decode an activity input as the worker does (`ActivityTriggerConverter.decode`)."""
    return ActivityTriggerConverter.decode(
        meta.Datum(value=input_json, type="json"), trigger_metadata=None
    )


def activity_trigger_output(result: Any) -> str:
    """Encode an activity result to the JSON string the extension stores in TaskCompleted."""
    datum = ActivityTriggerConverter.encode(result, expected_type=None)
    return str(datum.value)


def orchestration_trigger_input(context_json: str) -> func.OrchestrationContext:
    """Wrap the orchestration context JSON as the worker does (`OrchestrationTriggerConverter`)."""
    return OrchestrationTriggerConverter.decode(
        meta.Datum(value=context_json, type="string"), trigger_metadata=None
    )


# ------------------------------------------------------------------------- durable client binding


@dataclass(frozen=True)
class DurableClientBinding:
    """The JSON the Durable extension gives a `durableClient` binding: the hub and its HTTP API.

    The URLs point at the in-process host's durable HTTP API on 127.0.0.1:`port`, with the
    management URL templates of the real extension (`INSTANCEID`, `{eventName}`, `{text}`).
    """

    hub_name: str
    port: int
    host: str = "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{DURABLE_WEBHOOK_PATH}"

    def to_json(self, *, task_hub: str | None = None, connection_name: str | None = None) -> str:
        """The binding data for one `durableClient` binding (its own taskHub/connection if set)."""
        return client_binding_json(
            f"{self.base_url}/", task_hub or self.hub_name, connection=connection_name or DEFAULT_CONNECTION
        )


# ----------------------------------------------------------------------------------- invoking


class InvocationContext(func.Context):
    """The `context: func.Context` argument, for functions that declare one."""

    def __init__(self, invocation_id: str, function: IndexedFunction) -> None:
        self._invocation_id = invocation_id
        self._function = function
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function.name

    @property
    def function_directory(self) -> str:
        return str(Path(inspect.getfile(self._function.user_function)).parent)

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


class Invoker:
    """Runs the app's functions: async ones on one long-lived event loop, sync ones in a pool.

    One loop for the host's whole life: the Durable SDK keeps a global aiohttp session bound to the
    loop that first used it. `submit` is safe from any thread and returns a concurrent Future;
    `invoke` blocks for the result (never call it on the invoker's own loop thread).
    `durable_client` supplies the binding data for `durableClient` bindings; it is called per
    invocation, so it may read a port that is only known once the HTTP server listens.
    """

    def __init__(
        self,
        *,
        durable_client: Callable[[], DurableClientBinding] | None = None,
        max_workers: int = 8,
    ) -> None:
        self._durable_client = durable_client
        self._max_workers = max_workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __enter__(self) -> Invoker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the event loop thread and the thread pool (idempotent)."""
        if self._thread is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(self._max_workers, "host-function")
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="host-invoker", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Cancel running async invocations, close the Durable SDK's session, stop the loop."""
        loop, thread, pool = self._loop, self._thread, self._pool
        if loop is None or thread is None or pool is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_shutdown_loop_tasks(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            pool.shutdown(wait=True, cancel_futures=True)
            self._loop = self._thread = self._pool = None

    def submit(
        self, function: IndexedFunction, trigger_value: Any, *, reason: str
    ) -> concurrent.futures.Future[Any]:
        """Start one invocation with `trigger_value` bound to the trigger parameter."""
        if self._loop is None:
            raise RuntimeError(
                "Invoker is not started: call start() (or use it as a context manager)."
            )
        return asyncio.run_coroutine_threadsafe(
            self._run(function, trigger_value, reason), self._loop
        )

    def invoke(self, function: IndexedFunction, trigger_value: Any, *, reason: str) -> Any:
        """Run one invocation and return its result (or raise its exception); blocks."""
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "Invoker.invoke blocks and would deadlock on the invoker's own loop; "
                "await asyncio.wrap_future(invoker.submit(...)) instead."
            )
        return self.submit(function, trigger_value, reason=reason).result()

    def invoke_activity(self, function: IndexedFunction, input_json: str) -> str:
        """Run an activity on its JSON input; return the result JSON the extension would store."""
        value = activity_trigger_input(input_json)
        return activity_trigger_output(self.invoke(function, value, reason="(null)"))

    def invoke_orchestrator(self, function: IndexedFunction, context_json: str) -> str:
        """Run one orchestrator episode; the OrchestratorState JSON (the SDK's errors propagate)."""
        context = orchestration_trigger_input(context_json)
        return str(self.invoke(function, context, reason="(null)"))

    async def _run(self, function: IndexedFunction, trigger_value: Any, reason: str) -> Any:
        invocation_id = str(uuid.uuid4())
        logger.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id
        )
        started = time.monotonic()
        try:
            kwargs = self._arguments(function, trigger_value, invocation_id)
            if function.is_async:
                result = await function.user_function(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(function.user_function, **kwargs)
                result = await loop.run_in_executor(self._pool, call)
        except BaseException as exc:
            logger.warning(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms): %s: %s",
                function.name,
                invocation_id,
                _elapsed_ms(started),
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, asyncio.CancelledError),
            )
            raise
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            function.name,
            invocation_id,
            _elapsed_ms(started),
        )
        return result

    def _arguments(
        self, function: IndexedFunction, trigger_value: Any, invocation_id: str
    ) -> dict[str, Any]:
        if function.trigger.sdk_type is not None:
            trigger_value = sdk_binding_input(function.trigger, trigger_value)
        kwargs: dict[str, Any] = {function.trigger.name: trigger_value}
        for binding in function.bindings:
            if binding is function.trigger or binding.name == "$return":
                continue
            if binding.type != DURABLE_CLIENT:
                raise FunctionLoadError(
                    f"Function {function.name}: the in-process host does not support "
                    f"{binding.direction} bindings of type {binding.type} ({binding.name}); "
                    "use a client in the function body, or run it under `func start`."
                )
            if self._durable_client is None:
                raise FunctionLoadError(
                    f"Function {function.name} has a durableClient binding, but this Invoker has "
                    "no durable_client provider; construct it with durable_client=..."
                )
            kwargs[binding.name] = self._durable_client().to_json(
                task_hub=binding.raw.get("taskHub"),
                connection_name=binding.raw.get("connectionName"),
            )
        if function.requires_context:
            kwargs["context"] = InvocationContext(invocation_id, function)
        return kwargs


async def _shutdown_loop_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # The Durable SDK keeps one aiohttp session per process, bound to this loop: close it so a
    # later Invoker (a restarted host) gets a fresh one on its own loop.
    from azure.durable_functions.models.utils import http_utils

    close = getattr(http_utils, "_close_session", None)
    if close is not None:
        await close()


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
