"""Shared fixtures: a private Azurite for the session, fresh names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runner.azurite import AzuriteEndpoints, find_azurite, free_port, start_azurite

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "portfolios"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _missing_service(reason: str) -> None:
    """Skip, naming what is missing; under `make test` (REQUIRE_SERVICES=1) fail instead."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, in-memory Azurite on free loopback ports; yields its connection string."""
    if find_azurite() is None:
        _missing_service("Azurite is not installed (run scripts/bootstrap.sh, or `make test`)")
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    process = start_azurite(endpoints, log_path=log)
    try:
        yield endpoints.connection_string
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name, valid for containers, queues and tables (letters and digits)."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        _missing_service(f"the shared portfolio fixtures are not at {FIXTURES}")
    return FIXTURES
