"""The same results however a file is cut up: read in two processes, rendered in two processes,
rows spilled to disk, read in small chunks. Every size limit is shrunk here so small files take
every route, and the result is compared with the plain one-process run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from runner.tasks import parse_portfolio
from runner.tasks.portfolio_parser import export, groups, reader, records, sniff
from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule

Run = Callable[[str | bytes], list[Any]]

GROUPED = "investor_name,portfolio_name,isin,market_value,currency\n" + "".join(
    f"Investor {row // 40 % 3},Portfolio {row // 40},GB{row:010d},{row * 7.25:.2f},USD\n" for row in range(400)
)
INTERLEAVED = "portfolio_name,isin,market_value,currency,x\n" + "".join(
    f"P{row % 7},GB0007980591,{row},EUR,y\n" for row in range(400)
)
QUOTED = '"portfolio_name","isin","market_value","currency","x"\n' + "".join(
    f'"P{row % 5}","GB0007980591","{row:,}","EUR","y ""{row}"""\n' for row in range(400)
)
# A line break inside quotes, with four commas on each physical line (PACTA's guess counts lines).
QUOTED_BREAKS = "isin,market_value,currency,portfolio_name,investor_name\n" + "".join(
    f'GB0007980591,{row},EUR,"P{row % 5},\n,,, A",Inv\n' for row in range(200)
)
MESSY = "\ufeff\r\nisin;market_value;currency\r\n" + "".join(
    f"{'XX' if row % 9 == 0 else 'GB0007980591'};{row // 3},{row % 3}0;{'usd' if row % 4 else 'ABC'}\r\n"
    + ("\r\n" if row % 50 == 0 else "")
    for row in range(400)
)
HEADERLESS = "".join(f"Inv,P{row % 3},GB0007980591,{row}.5,USD\n" for row in range(400))


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Parse a file and give what must not depend on how it was cut up (no file names, no time)."""
    runs = iter(range(1_000))

    def parse(content: str | bytes) -> list[Any]:
        number = next(runs)
        input_dir, output_dir = tmp_path / f"in{number}", tmp_path / f"out{number}"
        input_dir.mkdir()
        (input_dir / "portfolio.csv").write_bytes(content.encode() if isinstance(content, str) else content)
        entries = parse_portfolio.process_directory(input_dir, output_dir)
        results = []
        for entry in entries:
            entry.pop("system_info")
            outputs = [(output_dir / p.pop("output_filename")).read_bytes() for p in entry.get("portfolios", [])]
            results.append((entry, outputs))
        return results

    return parse


def shrink_every_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sniff, "CHUNK_BYTES", 1024)  # checkpoints to split at
    monkeypatch.setattr(records, "CHUNK_BYTES", 700)
    monkeypatch.setattr(records, "CSV_BLOCK_ROWS", 13)
    monkeypatch.setattr(reader, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(export, "SPLIT_MIN_ROWS", 0)
    monkeypatch.setattr(groups, "BUFFERED_ROWS", 50)


@pytest.mark.parametrize(
    "content",
    [GROUPED, INTERLEAVED, QUOTED, QUOTED_BREAKS, MESSY, HEADERLESS],
    ids=["grouped", "interleaved", "quoted", "quoted-line-breaks", "messy", "headerless"],
)
def test_a_file_cut_into_pieces_gives_what_the_whole_file_gives(
    run: Run, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    whole = run(content)
    shrink_every_limit(monkeypatch)
    assert run(content) == whole
    assert "portfolios" in whole[0][0]


def test_an_error_in_the_second_process_refuses_the_file(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    check = reader.RowChecks.check

    def fail_late(self: reader.RowChecks, lines: Sequence[int], *args: Sequence[str]) -> None:
        if lines[-1] > 300:
            raise PortfolioFileError(Rule.INTERNAL, f"stopped at line {lines[-1]}")
        check(self, lines, *args)

    monkeypatch.setattr(reader.RowChecks, "check", fail_late)
    shrink_every_limit(monkeypatch)
    [(entry, _)] = run(GROUPED)
    assert entry["error_rule"] == "internal_error" and entry["error_detail"].startswith("stopped at line")


def test_the_work_files_are_gone_afterwards(run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink_every_limit(monkeypatch)
    run(GROUPED)
    assert sorted(path.suffix for path in (tmp_path / "out0").iterdir()) == [".csv"] * 10 + [".json"]


def test_with_the_limits_shrunk_the_work_is_shared_and_spilled(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted(module: Any, name: str) -> None:
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, **kwargs: calls.append(name) or original(*args, **kwargs))

    counted(reader, "fork_call")
    counted(export, "fork_call")
    counted(groups.GroupStore, "_spill")
    shrink_every_limit(monkeypatch)
    run(GROUPED)
    assert calls.count("fork_call") == 2 and "_spill" in calls
