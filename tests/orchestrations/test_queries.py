"""What the status API answers for a run id, against a real runs table in Azurite."""

from __future__ import annotations

import asyncio

import pytest

from orchestrations import queries
from orchestrations.run_store import RunStore

pytestmark = pytest.mark.azurite


@pytest.mark.parametrize(
    "run_id", ["a/b", "../..", "a\\b", "RUN-0123456789", "run-0123456789'", "x" * 65, "run 0123456789", "#", ""]
)
def test_an_id_no_run_can_have_names_no_run(azurite: str, unique_name: str, run_id: str) -> None:
    store = RunStore.from_connection_string(azurite, f"runs{unique_name}")

    assert asyncio.run(queries.describe_run(run_id, None, run_store=store)) is None


def test_an_id_of_the_run_form_is_looked_up(azurite: str, unique_name: str) -> None:
    store = RunStore.from_connection_string(azurite, f"runs{unique_name}")

    assert queries.is_run_id("run-0123456789abcdef0123456789ab") and not queries.is_run_id("a/b")
    assert asyncio.run(queries.describe_run("run-0123456789abcdef0123456789ab", None, run_store=store)) is None
