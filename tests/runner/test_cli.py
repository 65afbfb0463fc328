"""`python -m runner parse-portfolio` and the help text."""

from __future__ import annotations

import json
import os
import signal
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

    assert raised.value.code == "terminated" and raised.value.exit_code == EXIT_TERMINATED
