"""Fixtures for the portfolio parser's tests: run `process_directory` on files made in the test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.tasks.parse_portfolio import MANIFEST_NAME, process_directory


@dataclass
class Parsed:
    """The manifest entries of one `process_directory` run, and its output directory."""

    entries: list[dict[str, Any]]
    output_dir: Path

    @property
    def entry(self) -> dict[str, Any]:
        [entry] = self.entries
        return entry

    def output(self, portfolio: dict[str, Any]) -> bytes:
        return (self.output_dir / portfolio["output_filename"]).read_bytes()

    def rows(self, index: int = 0) -> list[str]:
        """The data lines of the entry's `index`-th output (header left out)."""
        return self.output(self.entry["portfolios"][index]).decode("utf-8").splitlines()[1:]

    def manifest_text(self) -> str:
        return (self.output_dir / MANIFEST_NAME).read_text(encoding="utf-8")


ParseFiles = Callable[..., Parsed]
ParseText = Callable[..., Parsed]


@pytest.fixture
def parse_files(tmp_path: Path, fixtures_dir: Path) -> ParseFiles:
    """Copy fixtures (a path under the fixtures directory) or write (name, bytes) pairs into an
    input directory, then run the parser on it."""

    def run(*files: str | tuple[str, bytes]) -> Parsed:
        input_dir = tmp_path / "input"
        input_dir.mkdir(exist_ok=True)
        for file in files:
            if isinstance(file, str):
                shutil.copy(fixtures_dir / file, input_dir / Path(file).name)
            else:
                (input_dir / file[0]).write_bytes(file[1])
        output_dir = tmp_path / "output"
        return Parsed(process_directory(input_dir, output_dir), output_dir)

    return run


@pytest.fixture
def parse_text(parse_files: ParseFiles) -> ParseText:
    """Parse one file given as text (UTF-8) or bytes."""

    def run(content: str | bytes, name: str = "portfolio.csv") -> Parsed:
        data = content.encode("utf-8") if isinstance(content, str) else content
        return parse_files((name, data))

    return run
