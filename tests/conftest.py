"""Shared fixtures: a private Azurite for the session, fresh names per test."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import ImageNotFound

from local_runner.azurite import AzuriteEndpoints, find_azurite, free_port, start_azurite
from local_runner.docker_backend import engine_address, engine_available

pytest_plugins = ["tests.cloud.fixtures"]

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "portfolios"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], Any], *, what: str = "the condition", timeout: float = 60.0,
    step: Callable[[], object] | None = None, interval: float = 0.02,
) -> Any:
    """Poll until `condition()` is truthy and return it (running `step` between polls); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        if step is not None:
            step()
        time.sleep(interval)


def missing_service(reason: str) -> None:
    """Skip, naming what is missing; under `make test` (REQUIRE_SERVICES=1) fail instead."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


# The app's callback token key in tests; a test about the setting itself removes or replaces it.
TEST_CALLBACK_TOKEN_KEY = "test-callback-token-key-" + "k" * 24


@pytest.fixture(autouse=True)
def callback_token_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CALLBACK_TOKEN_KEY", TEST_CALLBACK_TOKEN_KEY)
    return TEST_CALLBACK_TOKEN_KEY


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, in-memory Azurite on free loopback ports; yields its connection string.

    One per test module, not one per session: an in-memory Azurite 3.35 that has served a whole session's
    flows (thousands of blobs, tables and queue messages) was seen to spin at full CPU minutes later, with
    no request under way, and answer nothing again; a fresh one per module costs about a second."""
    if find_azurite() is None:
        missing_service("Azurite is not installed (run scripts/bootstrap.sh, or `make test`)")
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    process = start_azurite(endpoints, log_path=log)
    try:
        yield endpoints.connection_string
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    if not engine_available():
        missing_service(
            f"no Docker engine answers at {engine_address()} (start one with scripts/docker-engine.sh, or `make test`)"
        )
    client = docker.from_env(timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def runner_image(docker_client: docker.DockerClient) -> str:
    """The runner image the docker backend starts (RUNNER_IMAGE, built by `make images`)."""
    image = os.environ.get("RUNNER_IMAGE", "pacta-runner:local")
    try:
        docker_client.images.get(image)
    except ImageNotFound:
        missing_service(f"the Docker engine has no image {image} (build it with `make images`)")
    return image


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name, valid for containers, queues and tables (letters and digits)."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        missing_service(f"the shared portfolio fixtures are not at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def _span_exporter() -> Any:
    """The pytest process's one SDK tracer provider, recording in memory (OpenTelemetry lets a process set
    its global provider once, so every test that records spans shares it)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.fail("another tracer provider was installed first in this pytest process")
    return exporter


@pytest.fixture
def recorded_spans(_span_exporter: Any) -> Iterator[Any]:
    """The finished spans of this test (an InMemorySpanExporter: `.get_finished_spans()`)."""
    _span_exporter.clear()
    yield _span_exporter
    _span_exporter.clear()
