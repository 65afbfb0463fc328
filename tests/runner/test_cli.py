"""`python -m runner parse-portfolio` and the help text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.cli import _raise_terminated, main
from runner.errors import EXIT_TERMINATED, TerminatedError
from tests.runner.conftest import RunnerProcess

OUTPUT_SIMPLE_MD5 = "0f51946d64ef6ee4daca1a6969317cba"


def test_parse_portfolio_subcommand_parses_a_local_directory(
    run_runner: Callable[..., RunnerProcess], tmp_path: Path, fixtures_dir: Path
) -> None:
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    (input_dir / "simple.csv").write_bytes((fixtures_dir / "simple.csv").read_bytes())

    process = run_runner({}, "parse-portfolio", str(input_dir), str(tmp_path / "out"))

    assert process.exit_code == 0, process.stderr
    [entry] = json.loads((tmp_path / "out" / "processed_portfolios.json").read_text())
    assert entry["portfolios"][0]["output_md5"] == OUTPUT_SIMPLE_MD5
    assert "simple.csv: 1 portfolio(s)" in process.stdout


def test_parse_portfolio_subcommand_refuses_a_missing_input_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["parse-portfolio", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_help_names_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for name in ("TASK_TYPE", "RUNNER_RUN_ID", "RUNNER_CALLBACK_TOKEN", "RUNNER_OUTPUT_PREFIX"):
        assert name in help_text


def test_sigterm_becomes_a_reported_termination_and_a_second_one_is_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with pytest.raises(TerminatedError) as raised:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode
        os.kill(os.getpid(), signal.SIGTERM)  # ignored now: the failure report must not be cut short
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert raised.value.error.code == "terminated" and raised.value.error.exit_code == EXIT_TERMINATED


FORK_WITH_A_SIGTERM = """
import os, signal
from runner.cli import _raise_terminated
from runner.errors import TerminatedError
from runner.tasks.portfolio_parser.parallel import fork_call

signal.signal(signal.SIGTERM, _raise_terminated)
os.register_at_fork(before=lambda: os.kill(os.getpid(), signal.SIGTERM))  # the stop comes mid-fork
try:
    print("finished", fork_call(sum, [1, 2]).result())
except TerminatedError:
    print("terminated")
"""


def test_a_sigterm_arriving_while_the_parser_forks_is_raised_not_lost(runner_image_dir: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-c", FORK_WITH_A_SIGTERM], cwd=runner_image_dir, capture_output=True, text=True,
        timeout=60, check=False,
    )

    assert process.stdout == "terminated\n", process.stderr
    assert "Exception ignored" not in process.stderr


def test_the_parse_command_exit_codes_are_runner_errors_values() -> None:
    # runner.cli keeps its own copies so that parse-portfolio need not import runner.errors (pydantic).
    from runner import cli, errors

    assert (cli.EXIT_SUCCEEDED, cli.EXIT_BAD_ENVIRONMENT) == (errors.EXIT_SUCCEEDED, errors.EXIT_BAD_ENVIRONMENT)


LOADED_BY_THE_PARSE_COMMAND = """
import sys
from runner.cli import main
main(["parse-portfolio", sys.argv[1], sys.argv[2]])
heavy = ("pydantic", "azure", "orchestrations", "opentelemetry")
print(sorted(name for name in sys.modules if name.split(".")[0] in heavy))
"""


def test_the_parse_command_loads_neither_pydantic_nor_the_contracts_nor_opentelemetry(tmp_path: Path) -> None:
    # Whole-process start-up counts in the parse bench (issue 14): these took about 0.12 s.
    (tmp_path / "in").mkdir()
    process = subprocess.run(
        [sys.executable, "-c", LOADED_BY_THE_PARSE_COMMAND, str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout.splitlines()[-1] == "[]"
