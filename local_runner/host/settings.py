"""The host's own settings, read as `func start` reads them: `host.json` and `local.settings.json`.

`load_host_settings(app_dir)` reads the parts of `host.json` the in-process host honours (queue
retry, encoding, batches and polling interval, the HTTP route prefix, the durable task hub name);
`load_local_settings(app_dir)` reads `local.settings.json`, and `apply_local_settings` copies its
`Values` into the environment for keys not already set, exactly as Core Tools does. A malformed
value fails with a `ConfigurationError` that names the file and the key.
"""

from __future__ import annotations

import json
import os
import re
import socket
import zlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from orchestrations.errors import ConfigurationError

HOST_JSON = "host.json"
LOCAL_SETTINGS_JSON = "local.settings.json"
# App settings named AzureFunctionsJobHost__<path> override host.json's value at that path.
HOST_OVERRIDE_PREFIX = "AzureFunctionsJobHost"
MessageEncoding = Literal["base64", "none"]
# .NET TimeSpan "[d.]hh:mm[:ss[.fffffff]]", the form host.json uses.
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")
# Durable task hub names: a letter, then letters and digits, 3 to 45 characters (Azure Storage).
_HUB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")


# The webjobs storage extension's references below are Azure/azure-webjobs-sdk @f79ea0bf,
# src/Microsoft.Azure.WebJobs.Extensions.Storage/ (SDK_STORAGE):
# QueuePollingIntervals.cs L10-11: the shortest wait between polls of an empty queue, and the default longest.
MIN_POLLING_INTERVAL = timedelta(milliseconds=100)
DEFAULT_MAX_POLLING_INTERVAL = timedelta(minutes=1)
# StorageWebJobsBuilderExtensions.cs L73-77: in the Development environment the longest wait is 2 s.
DEVELOPMENT_MAX_POLLING_INTERVAL = timedelta(seconds=2)
# The Functions host's environment name: AZURE_FUNCTIONS_ENVIRONMENT (local.settings.json sets Development).
ENVIRONMENT_SETTING = "AZURE_FUNCTIONS_ENVIRONMENT"


@dataclass(frozen=True)
class QueueSettings:
    """`extensions.queues` in host.json: how queue triggers retry and decode messages, batch and poll.

    `new_batch_threshold` and `max_polling_interval` are None unless host.json sets them, and None means the
    extension's default (`effective_new_batch_threshold`, `polling_ceiling`)."""

    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    message_encoding: MessageEncoding = "base64"
    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_polling_interval: timedelta | None = None

    def effective_new_batch_threshold(self) -> int:
        """In-flight invocations at or below which a listener fetches its next batch.

        SDK_STORAGE Queues/Config/QueuesOptions.cs L68-78: unset, it is (BatchSize / 2) * processor count,
        in integer arithmetic; the count is Environment.ProcessorCount, or 1 on the Consumption plan
        (src/Microsoft.Azure.WebJobs.Host.Storage/Utility.cs L11-20). So at most batchSize + newBatchThreshold
        invocations of one listener run at once.
        """
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return (self.batch_size // 2) * _processor_count()

    def polling_ceiling(self, environ: Mapping[str, str] | None = None) -> timedelta:
        """The longest wait between polls of an empty queue: host.json's maxPollingInterval, else the
        extension's default for the environment (2 s in Development, else 1 minute)."""
        if self.max_polling_interval is not None:
            return self.max_polling_interval
        env = os.environ if environ is None else environ
        if env.get(ENVIRONMENT_SETTING, "").lower() == "development":  # IHostEnvironment.IsDevelopment
            return DEVELOPMENT_MAX_POLLING_INTERVAL
        return DEFAULT_MAX_POLLING_INTERVAL


# extensions.durableTask.maxConcurrentOrchestratorFunctions and maxConcurrentActivityFunctions when host.json sets
# neither, outside the Consumption plan: 10 per processor (AzureStorageDurabilityProviderFactory.cs L57-58 and
# L85-86, azure-functions-durable-extension @a7c6d69).
DEFAULT_DURABLE_CONCURRENCY = 10 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class HostSettings:
    """The parts of host.json the in-process host honours; the rest is the real host's business."""

    queues: QueueSettings = field(default_factory=QueueSettings)
    hub_name: str = "TestHubName"
    http_route_prefix: str = "api"
    # Episodes (orchestrator work items) and activities the durable engine runs at once.
    max_concurrent_orchestrator_functions: int = DEFAULT_DURABLE_CONCURRENCY
    max_concurrent_activity_functions: int = DEFAULT_DURABLE_CONCURRENCY


@dataclass(frozen=True)
class LocalSettings:
    """local.settings.json: app settings (`Values`), local HTTP port (`Host.LocalHttpPort`)."""

    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    local_http_port: int = 7071


def load_host_settings(app_dir: Path, *, environ: Mapping[str, str] | None = None) -> HostSettings:
    """Read `<app_dir>/host.json`; `%NAME%` in the hub name is resolved from `environ`."""
    path = Path(app_dir) / HOST_JSON
    if not path.is_file():
        raise ConfigurationError(
            "host_json_missing",
            f"{path} does not exist: the app root needs a host.json (`func init` writes one).",
        )
    env = os.environ if environ is None else environ
    root, overrides = _with_overrides(_read_json_object(path), env)
    try:
        return _host_settings(root, path, env)
    except ConfigurationError as exc:
        if not overrides:
            raise
        raise ConfigurationError(
            exc.code, f"{exc.message} (host.json as overridden by the app settings {', '.join(overrides)})"
        ) from exc


def _with_overrides(root: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """host.json with the values of `AzureFunctionsJobHost__<path>` app settings put in, as the Functions host
    reads them ("Override host.json values", learn.microsoft.com/azure/azure-functions/functions-host-json;
    azure-functions-host ConfigurationSectionNames.cs: JobHost = "AzureFunctionsJobHost"): the path's parts
    name nested keys, matched without regard to case; a whole number is read as one. The names applied."""
    merged = json.loads(json.dumps(root))
    applied = []
    for name, value in sorted(environ.items()):
        prefix, _, rest = name.partition("__")
        if prefix.lower() != HOST_OVERRIDE_PREFIX.lower() or not rest:
            continue
        *parents, leaf = rest.split("__")
        section = merged
        for part in parents:
            key = next((k for k in section if k.lower() == part.lower()), part)
            if not isinstance(section.get(key), dict):
                section[key] = {}
            section = section[key]
        key = next((k for k in section if k.lower() == leaf.lower()), leaf)
        section[key] = int(value) if value.isdigit() else value
        applied.append(name)
    return merged, applied


def _host_settings(root: dict[str, Any], path: Path, environ: Mapping[str, str]) -> HostSettings:
    extensions = _object(root, "extensions", path)
    queues = _object(extensions, "queues", path, "extensions.queues")
    durable = _object(extensions, "durableTask", path, "extensions.durableTask")
    http = _object(extensions, "http", path, "extensions.http")
    defaults = QueueSettings()
    queue_settings = QueueSettings(
        max_dequeue_count=_positive_int(
            queues, "maxDequeueCount", defaults.max_dequeue_count, path, "extensions.queues"
        ),
        visibility_timeout=_timespan(
            queues, "visibilityTimeout", defaults.visibility_timeout, path, "extensions.queues"
        ),
        message_encoding=_encoding(queues, path),
        batch_size=_positive_int(
            queues, "batchSize", defaults.batch_size, path, "extensions.queues"
        ),
        new_batch_threshold=_non_negative_int_or_none(queues, "newBatchThreshold", path),
        max_polling_interval=_polling_interval(queues, path),
    )
    if queue_settings.batch_size > 32:
        raise ConfigurationError(
            "settings_file_invalid",
            f"{path}: extensions.queues.batchSize is {queue_settings.batch_size}; "
            "Azure Queue storage delivers at most 32 messages at a time.",
        )
    return HostSettings(
        queues=queue_settings,
        hub_name=_hub_name(durable, path, environ),
        # Positive integers, as DurableTaskOptions.Validate demands (DurableTaskOptions.cs L333-341).
        max_concurrent_orchestrator_functions=_positive_int(
            durable, "maxConcurrentOrchestratorFunctions", DEFAULT_DURABLE_CONCURRENCY, path, "extensions.durableTask"
        ),
        max_concurrent_activity_functions=_positive_int(
            durable, "maxConcurrentActivityFunctions", DEFAULT_DURABLE_CONCURRENCY, path, "extensions.durableTask"
        ),
        http_route_prefix=_string(http, "routePrefix", "api", path, "extensions.http").strip("/"),
    )


def load_local_settings(app_dir: Path) -> LocalSettings:
    """Read `<app_dir>/local.settings.json`; no file gives empty settings, as for `func start`."""
    path = Path(app_dir) / LOCAL_SETTINGS_JSON
    if not path.is_file():
        return LocalSettings()
    root = _read_json_object(path)
    if root.get("IsEncrypted") is True:
        raise ConfigurationError(
            "local_settings_encrypted",
            f"{path}: IsEncrypted is true; the in-process host cannot decrypt values. "
            "Run `func settings decrypt`, or write the values in plain text.",
        )
    values = _object(root, "Values", path)
    for key, value in values.items():
        if not isinstance(value, str):
            raise ConfigurationError(
                "settings_file_invalid",
                f"{path}: Values.{key} must be a string, got {value!r}; quote it.",
            )
    host = _object(root, "Host", path)
    port = _positive_int(host, "LocalHttpPort", 7071, path, "Host")
    if port > 65535:
        raise ConfigurationError(
            "settings_file_invalid", f"{path}: Host.LocalHttpPort {port} is not a TCP port."
        )
    return LocalSettings(values=MappingProxyType(dict(values)), local_http_port=port)


def apply_local_settings(
    settings: LocalSettings, environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """Copy `Values` into `environ` (default `os.environ`) for keys not already set; the keys set.

    `func start` does the same: a variable already in the environment wins over the file.
    """
    target = os.environ if environ is None else environ
    applied = [key for key in settings.values if key not in target]
    for key in applied:
        target[key] = settings.values[key]
    return applied


def default_host_id(app_dir: Path) -> str:
    """The host id for blob receipts: `AzureFunctionsWebHost__hostid`, else machine name + app hash.

    The real host derives a local id from the machine name and the script path in the same spirit;
    the hash differs, so receipts written by `func start` and by this host are not shared.
    """
    configured = os.environ.get("AzureFunctionsWebHost__hostid")
    if configured:
        return configured
    machine = re.sub(r"[^a-z0-9-]", "", socket.gethostname().lower()) or "localhost"
    digest = zlib.crc32(str(Path(app_dir).resolve()).encode())
    return f"{machine}-{digest}"[:32].rstrip("-")


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan such as `00:00:30` or `1.02:00:00.5`; ValueError if malformed."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a TimeSpan like 00:00:30")
    days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise ValueError(f"{text!r} has hours over 23 or minutes/seconds over 59")
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds or 0),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            "settings_file_invalid", f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}."
        ) from exc
    if not isinstance(data, dict):
        raise ConfigurationError("settings_file_invalid", f"{path} must hold a JSON object.")
    return data


def _object(parent: Mapping[str, Any], key: str, path: Path, where: str = "") -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(
            "settings_file_invalid", f"{path}: {where or key} must be a JSON object, got {value!r}."
        )
    return value


def _positive_int(
    section: Mapping[str, Any], key: str, default: int, path: Path, where: str
) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            "settings_file_invalid",
            f"{path}: {where}.{key} must be a positive integer, got {value!r} "
            f"(remove it to use the default {default}).",
        )
    return value


def _non_negative_int_or_none(section: Mapping[str, Any], key: str, path: Path) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            "settings_file_invalid",
            f"{path}: extensions.queues.{key} must be an integer >= 0, got {value!r} "
            "(remove it to use the default, batchSize / 2 * processors).",
        )
    return value


def _polling_interval(queues: Mapping[str, Any], path: Path) -> timedelta | None:
    """host.json's maxPollingInterval: a TimeSpan, or milliseconds as Functions 1.x wrote it; at least 100 ms
    (SDK_STORAGE Queues/Config/QueuesOptions.cs L95-109 refuses less)."""
    value = queues.get("maxPollingInterval")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        interval = timedelta(milliseconds=value)
    else:
        interval = _timespan(queues, "maxPollingInterval", timedelta(0), path, "extensions.queues")
    if interval < MIN_POLLING_INTERVAL:
        raise ConfigurationError(
            "settings_file_invalid",
            f"{path}: extensions.queues.maxPollingInterval is {interval}; "
            "it must not be less than 00:00:00.100 (the queue listener's minimum).",
        )
    return interval


def _processor_count() -> int:
    """Environment.ProcessorCount: the processors this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _string(section: Mapping[str, Any], key: str, default: str, path: Path, where: str) -> str:
    value = section.get(key, default)
    if not isinstance(value, str):
        raise ConfigurationError(
            "settings_file_invalid", f"{path}: {where}.{key} must be a string, got {value!r}."
        )
    return value


def _timespan(
    section: Mapping[str, Any], key: str, default: timedelta, path: Path, where: str
) -> timedelta:
    if key not in section:
        return default
    try:
        return parse_timespan(_string(section, key, "", path, where))
    except ValueError as exc:
        raise ConfigurationError(
            "settings_file_invalid", f"{path}: {where}.{key}: {exc} (hh:mm:ss, e.g. 00:00:30)."
        ) from exc


def _encoding(queues: Mapping[str, Any], path: Path) -> MessageEncoding:
    value = _string(queues, "messageEncoding", "base64", path, "extensions.queues").lower()
    if value == "base64":
        return "base64"
    if value == "none":
        return "none"
    raise ConfigurationError(
        "settings_file_invalid",
        f"{path}: extensions.queues.messageEncoding must be base64 or none, got {value!r}.",
    )


def _hub_name(durable: Mapping[str, Any], path: Path, environ: Mapping[str, str]) -> str:
    name = _string(durable, "hubName", "TestHubName", path, "extensions.durableTask")
    if len(name) > 2 and name.startswith("%") and name.endswith("%"):
        setting = name[1:-1]
        if not environ.get(setting):
            raise ConfigurationError(
                "settings_file_invalid",
                f"{path}: extensions.durableTask.hubName refers to app setting {setting}, "
                "which is not set; set it (e.g. in local.settings.json Values).",
            )
        name = environ[setting]
    if not _HUB_NAME.match(name):
        raise ConfigurationError(
            "settings_file_invalid",
            f"{path}: extensions.durableTask.hubName {name!r} must start with a letter and hold "
            "3 to 45 letters and digits.",
        )
    return name
