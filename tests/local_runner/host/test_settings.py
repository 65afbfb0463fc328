"""host.json and local.settings.json, read as `func start` reads them."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from local_runner.host.settings import (
    HostSettings,
    LocalSettings,
    apply_local_settings,
    load_host_settings,
    load_local_settings,
    parse_timespan,
)
from orchestrations.errors import ConfigurationError


def write_json(directory: Path, name: str, content: Any) -> Path:
    path = directory / name
    path.write_text(json.dumps(content))
    return path


def test_a_minimal_host_json_gives_the_hosts_defaults(tmp_path: Path) -> None:
    write_json(tmp_path, "host.json", {"version": "2.0"})

    settings = load_host_settings(tmp_path)

    assert settings == HostSettings()
    assert settings.queues.max_dequeue_count == 5
    assert settings.queues.visibility_timeout == timedelta(0)
    assert settings.queues.message_encoding == "base64"
    assert settings.hub_name == "TestHubName"
    # The extension's defaults outside the Consumption plan: 10 per processor.
    assert settings.max_concurrent_orchestrator_functions == 10 * (os.cpu_count() or 1)
    assert settings.max_concurrent_activity_functions == 10 * (os.cpu_count() or 1)
    assert settings.http_route_prefix == "api"


def test_app_settings_named_azurefunctionsjobhost_override_host_json_values(tmp_path: Path) -> None:
    write_json(tmp_path, "host.json", {"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:02",
                                                                                  "batchSize": 16}}})
    environ = {
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100",  # as host.json spells it
        "AZUREFUNCTIONSJOBHOST__EXTENSIONS__QUEUES__BATCHSIZE": "4",  # any case; a number read as one
        "AzureFunctionsJobHost__extensions__durableTask__hubName": "FromOverride",  # a section host.json lacks
        "AzureFunctionsJobHost": "no path: ignored",
    }

    settings = load_host_settings(tmp_path, environ=environ)

    assert settings.queues.max_polling_interval == timedelta(milliseconds=100)
    assert settings.queues.batch_size == 4
    assert settings.hub_name == "FromOverride"
    assert load_host_settings(tmp_path, environ={}).queues.max_polling_interval == timedelta(seconds=2)


def test_an_override_host_json_refuses_is_named_in_the_error(tmp_path: Path) -> None:
    write_json(tmp_path, "host.json", {"version": "2.0"})

    with pytest.raises(ConfigurationError) as error:
        load_host_settings(tmp_path, environ={"AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "1s"})

    assert "maxPollingInterval" in error.value.message
    assert "AzureFunctionsJobHost__extensions__queues__maxPollingInterval" in error.value.message


def test_host_json_queue_durable_and_http_settings_are_read(tmp_path: Path) -> None:
    write_json(
        tmp_path,
        "host.json",
        {
            "version": "2.0",
            "extensions": {
                "queues": {
                    "maxDequeueCount": 3,
                    "visibilityTimeout": "00:00:30",
                    "messageEncoding": "None",
                    "batchSize": 8,
                },
                "blobs": {"maxDegreeOfParallelism": 4},
                "durableTask": {
                    "hubName": "PactaHub", "maxConcurrentOrchestratorFunctions": 3, "maxConcurrentActivityFunctions": 5,
                },
                "http": {"routePrefix": "/v1/"},
            },
        },
    )

    settings = load_host_settings(tmp_path)

    assert settings.queues.max_dequeue_count == 3
    assert settings.queues.visibility_timeout == timedelta(seconds=30)
    assert settings.queues.message_encoding == "none"
    assert settings.queues.batch_size == 8
    assert settings.hub_name == "PactaHub"
    assert (settings.max_concurrent_orchestrator_functions, settings.max_concurrent_activity_functions) == (3, 5)
    assert settings.http_route_prefix == "v1"


def test_a_hub_name_may_come_from_an_app_setting(tmp_path: Path) -> None:
    write_json(tmp_path, "host.json", {"extensions": {"durableTask": {"hubName": "%MY_HUB%"}}})

    assert load_host_settings(tmp_path, environ={"MY_HUB": "FromSetting"}).hub_name == "FromSetting"
    with pytest.raises(ConfigurationError, match="MY_HUB"):
        load_host_settings(tmp_path, environ={})


@pytest.mark.parametrize(
    ("extensions", "key"),
    [
        ({"queues": {"maxDequeueCount": 0}}, "extensions.queues.maxDequeueCount"),
        ({"queues": {"maxDequeueCount": "5"}}, "extensions.queues.maxDequeueCount"),
        ({"queues": {"visibilityTimeout": "30s"}}, "extensions.queues.visibilityTimeout"),
        ({"queues": {"messageEncoding": "utf8"}}, "extensions.queues.messageEncoding"),
        ({"queues": {"batchSize": 64}}, "extensions.queues.batchSize"),
        ({"durableTask": {"hubName": "no-dashes"}}, "extensions.durableTask.hubName"),
        ({"durableTask": {"maxConcurrentOrchestratorFunctions": 0}},
         "extensions.durableTask.maxConcurrentOrchestratorFunctions"),
        ({"durableTask": {"maxConcurrentActivityFunctions": "8"}},
         "extensions.durableTask.maxConcurrentActivityFunctions"),
        ({"queues": []}, "extensions.queues"),
    ],
)
def test_a_malformed_host_json_value_names_the_file_and_key(
    tmp_path: Path, extensions: dict[str, Any], key: str
) -> None:
    path = write_json(tmp_path, "host.json", {"version": "2.0", "extensions": extensions})

    with pytest.raises(ConfigurationError) as raised:
        load_host_settings(tmp_path)

    assert str(path) in str(raised.value)
    assert key in str(raised.value)


def test_a_missing_or_broken_host_json_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"host\.json"):
        load_host_settings(tmp_path)
    (tmp_path / "host.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_host_settings(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:00", timedelta(0)),
        ("00:05", timedelta(minutes=5)),
        ("01:02:03", timedelta(hours=1, minutes=2, seconds=3)),
        ("2.00:00:01.5", timedelta(days=2, seconds=1, milliseconds=500)),
    ],
)
def test_timespans_parse_as_dotnet_writes_them(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


def test_local_settings_values_and_port_are_read(tmp_path: Path) -> None:
    write_json(
        tmp_path,
        "local.settings.json",
        {"IsEncrypted": False, "Values": {"A": "1", "B": "2"}, "Host": {"LocalHttpPort": 7072}},
    )

    settings = load_local_settings(tmp_path)

    assert dict(settings.values) == {"A": "1", "B": "2"}
    assert settings.local_http_port == 7072


def test_no_local_settings_file_gives_empty_values_and_port_7071(tmp_path: Path) -> None:
    assert load_local_settings(tmp_path) == LocalSettings()
    assert load_local_settings(tmp_path).local_http_port == 7071


def test_values_fill_only_the_environment_variables_not_already_set() -> None:
    environ = {"A": "from-environment"}
    settings = LocalSettings(values={"A": "from-file", "B": "from-file"})

    applied = apply_local_settings(settings, environ)

    assert applied == ["B"]
    assert environ == {"A": "from-environment", "B": "from-file"}


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({"Values": {"PORT": 5}}, "Values.PORT"),
        ({"Values": []}, "Values"),
        ({"Host": {"LocalHttpPort": "x"}}, "Host.LocalHttpPort"),
        ({"IsEncrypted": True, "Values": {}}, "IsEncrypted"),
    ],
)
def test_a_malformed_local_settings_value_names_the_file_and_key(
    tmp_path: Path, content: dict[str, Any], key: str
) -> None:
    path = write_json(tmp_path, "local.settings.json", content)

    with pytest.raises(ConfigurationError) as raised:
        load_local_settings(tmp_path)

    assert str(path) in str(raised.value)
    assert key in str(raised.value)
