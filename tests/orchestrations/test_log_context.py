"""The run's ids on every record logged inside its context (async code, `to_thread`, pool threads), the
LOG_FORMAT setting, and how JSON and text lines look."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from orchestrations.contracts import RunRequest, SourceBlob, TaskType
from orchestrations.job_spec import build_job_spec
from orchestrations.log_context import (
    HANDLER_NAME,
    RUNNER_LOG_FORMAT_VAR,
    JsonFormatter,
    LogFormat,
    RunContextFilter,
    TextFormatter,
    bind_execution_ref,
    install,
    run_context,
)
from orchestrations.settings import AppSettings
from runner.environment import LOG_FORMAT_VAR

logger = logging.getLogger("orchestrations.test")
# Outside the emulator too, the runner may use Azurite's connection string.
STORAGE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "RUNNER_STORAGE_AUTH": "connection_string"}


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """The records the logger emits, after the run context filter."""
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    handler = Keep()
    handler.addFilter(RunContextFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield kept
    finally:
        logger.removeHandler(handler)


def ids(record: logging.LogRecord) -> tuple[str | None, str | None]:
    return getattr(record, "run_id", None), getattr(record, "execution_ref", None)


def test_records_inside_a_run_context_carry_its_run_id_and_the_ref_once_bound(
    records: list[logging.LogRecord],
) -> None:
    with run_context("run-1"):
        logger.info("before the job")
        bind_execution_ref("process:run-1")
        logger.info("after the start")
    logger.info("outside")

    assert [ids(record) for record in records] == [("run-1", None), ("run-1", "process:run-1"), (None, None)]


def test_async_code_and_to_thread_carry_the_context_and_concurrent_runs_keep_their_own(
    records: list[logging.LogRecord],
) -> None:
    async def work(run_id: str) -> None:
        with run_context(run_id, f"aca:{run_id}"):
            await asyncio.sleep(0)
            await asyncio.to_thread(logger.info, "in a thread of %s", run_id)

    async def both() -> None:
        await asyncio.gather(work("run-a"), work("run-b"))

    asyncio.run(both())

    assert sorted(ids(record) for record in records) == [("run-a", "aca:run-a"), ("run-b", "aca:run-b")]


def test_a_pool_thread_does_not_keep_the_last_invocations_run(records: list[logging.LogRecord]) -> None:
    def invocation(run_id: str | None) -> None:
        if run_id is None:
            logger.info("not about a run")
            return
        with run_context(run_id):
            logger.info("about %s", run_id)

    with ThreadPoolExecutor(max_workers=1) as pool:  # one thread: the second call runs where the first ran
        pool.submit(invocation, "run-1").result()
        pool.submit(invocation, None).result()

    assert [ids(record) for record in records] == [("run-1", None), (None, None)]


def test_ids_given_in_extra_win_and_another_runs_line_gets_no_ref_of_this_one(
    records: list[logging.LogRecord],
) -> None:
    with run_context("run-1", "process:run-1"):
        logger.info("told run-2 of its slot", extra={"run_id": "run-2"})

    assert [ids(record) for record in records] == [("run-2", None)]


def test_a_json_line_has_zaps_field_names_the_ids_and_no_secret() -> None:
    record = logging.LogRecord("orchestrations.x", logging.WARNING, __file__, 1, "key %s", ("k3y-s3cret",), None)
    record.run_id, record.execution_ref = "run-1", "docker:pacta-run-run-1"

    line = json.loads(JsonFormatter(secrets=["k3y-s3cret"]).format(record))

    assert line.pop("ts").endswith("Z")
    assert line == {"level": "warn", "logger": "orchestrations.x", "msg": "key ***", "run_id": "run-1",
                    "execution_ref": "docker:pacta-run-run-1"}


def test_a_json_line_of_an_exception_keeps_the_traceback_in_one_line() -> None:
    try:
        raise RuntimeError("broke")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())

    text = JsonFormatter().format(record)

    assert "\n" not in text and "RuntimeError: broke" in json.loads(text)["stacktrace"]


def test_a_text_line_ends_with_the_ids_and_hides_secrets() -> None:
    record = logging.LogRecord("orchestrations.x", logging.INFO, __file__, 1, "conn %s", ("AccountKey=abc",), None)
    record.run_id = "run-1"

    line = TextFormatter(secrets=["AccountKey=abc"]).format(record)

    assert line.endswith("INFO    orchestrations.x: conn *** [run_id=run-1]")


def test_install_formats_the_hosts_handler_and_only_filters_the_others() -> None:
    ours, theirs = logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    ours.set_name(HANDLER_NAME)
    root = logging.getLogger()
    root.addHandler(ours)
    root.addHandler(theirs)
    try:
        install(LogFormat.JSON)
        install(LogFormat.JSON)  # the in-process host loads the app again at each start
    finally:
        root.removeHandler(ours)
        root.removeHandler(theirs)

    assert isinstance(ours.formatter, JsonFormatter) and theirs.formatter is None
    assert [type(f) for f in ours.filters] == [RunContextFilter] == [type(f) for f in theirs.filters]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"AZURE_FUNCTIONS_ENVIRONMENT": "Development"}, LogFormat.TEXT),
        ({}, LogFormat.JSON),
        ({"AZURE_FUNCTIONS_ENVIRONMENT": "Development", "LOG_FORMAT": "json"}, LogFormat.JSON),
        ({"LOG_FORMAT": "text"}, LogFormat.TEXT),
        ({"LOG_FORMAT": ""}, LogFormat.JSON),
    ],
)
def test_log_format_is_text_under_the_emulator_and_json_lines_outside_unless_set(
    values: dict[str, str], expected: LogFormat
) -> None:
    settings = AppSettings.model_validate({**STORAGE, **values})

    assert settings.log_output is expected


def test_a_bad_log_format_stops_the_start_up_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        AppSettings.model_validate({**STORAGE, "LOG_FORMAT": "xml"})


def test_the_runner_gets_the_apps_log_format_under_the_name_it_reads() -> None:
    settings = AppSettings.model_validate(STORAGE)
    request = RunRequest(
        run_id="run-0123456789", task_type=TaskType.PARSE_PORTFOLIO, inputs=["az://uploads/parse_portfolio/a.csv"],
        source=SourceBlob(container="uploads", name="parse_portfolio/a.csv", etag="e", size=1,
                          uri="az://uploads/parse_portfolio/a.csv"),
        requested_at=datetime(2026, 11, 27, tzinfo=UTC),
    )

    env = build_job_spec(request, "t" * 32, settings).env

    assert RUNNER_LOG_FORMAT_VAR == LOG_FORMAT_VAR and env[LOG_FORMAT_VAR] == "json"
