"""The same results however a file is cut up: read in two processes, rendered in two processes,
rows spilled to disk, read in small chunks. Every size limit is shrunk here so small files take
every route, and the result is compared with the plain one-process run."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from runner.tasks import parse_portfolio
from runner.tasks.portfolio_parser import export, groups, parallel, reader, records, sniff
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
    monkeypatch.setattr(sniff, "MD5_PROCESS_MIN_BYTES", 0)  # the input's MD5 taken in a process of its own
    monkeypatch.setattr(records, "CHUNK_BYTES", 700)
    monkeypatch.setattr(records, "CSV_BLOCK_ROWS", 13)
    monkeypatch.setattr(reader, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(export, "SPLIT_MIN_ROWS", 0)
    monkeypatch.setattr(groups, "BUFFERED_ROWS", 50)
    monkeypatch.setattr(reader, "spare_core", lambda: True)  # however busy the machine running the tests
    monkeypatch.setattr(export, "spare_core", lambda: True)


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


def test_the_input_md5_taken_in_its_own_process_is_the_files(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def fork_call(function: Callable[..., str], *args: object) -> parallel.Pending[str]:
        calls.append(function)
        return parallel.fork_call(function, *args)

    monkeypatch.setattr(sniff, "MD5_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(sniff, "fork_call", fork_call)
    [(entry, _)] = run(GROUPED)
    assert calls == [sniff.file_md5]
    assert entry["input_md5"] == hashlib.md5(GROUPED.encode()).hexdigest()


def test_an_input_md5_its_process_cannot_take_refuses_the_file_as_unreadable(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(path: Path) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sniff, "MD5_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(sniff, "file_md5", unreadable)  # the forked process has it too
    [(entry, _)] = run(GROUPED)
    assert (entry["error_rule"], entry["input_md5"]) == ("unreadable", None)
    assert "Permission denied" in entry["error_detail"]


def test_a_file_that_cannot_be_read_ends_the_process_taking_its_md5(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(path: Path, digest: sniff.FileMd5) -> sniff.FileFacts:
        raise PermissionError(13, "Permission denied")

    cancelled: list[sniff.FileMd5] = []
    original = sniff.FileMd5.cancel

    def cancel(self: sniff.FileMd5) -> None:
        cancelled.append(self)
        original(self)

    monkeypatch.setattr(sniff, "MD5_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(sniff, "_scan", unreadable)
    monkeypatch.setattr(sniff.FileMd5, "cancel", cancel)
    [(entry, _)] = run(GROUPED)
    assert (entry["error_rule"], entry["input_md5"]) == ("unreadable", None)
    [digest] = cancelled
    assert digest._pending is not None and digest._pending._pid is None  # waited for: no zombie left


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


def test_with_no_spare_core_the_work_stays_in_one_process(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run(GROUPED)
    shrink_every_limit(monkeypatch)
    monkeypatch.setattr(reader, "spare_core", lambda: False)
    monkeypatch.setattr(export, "spare_core", lambda: False)
    monkeypatch.setattr(reader, "fork_call", None)  # would raise if called
    monkeypatch.setattr(export, "fork_call", None)
    assert run(GROUPED) == whole


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("max 100000", None),
        ("150000 100000", 1.5),
        ("200000 100000\n", 2.0),
        ("-1 100000", None),
        ("", None),
        (None, None),
    ],
)
def test_a_cgroup_cpu_quota_reads_as_cores(text: str | None, cores: float | None) -> None:
    assert parallel.cpu_quota(text) == cores


def test_cpu_pressure_is_the_some_avg10_share() -> None:
    text = "some avg10=12.50 avg60=3.00 avg300=1.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    assert parallel.cpu_pressure(text) == 12.5
    assert parallel.cpu_pressure(None) is None and parallel.cpu_pressure("full avg10=1.0") is None


@pytest.mark.parametrize(
    ("cores", "pressure", "spare"), [(2.0, "1.00", True), (2.0, "75.52", False), (1.5, "0.00", False)]
)
def test_a_core_is_spare_with_two_usable_cores_and_little_cpu_pressure(
    monkeypatch: pytest.MonkeyPatch, cores: float, pressure: str, spare: bool
) -> None:
    monkeypatch.setattr(parallel, "usable_cores", lambda: cores)
    monkeypatch.setattr(parallel, "_read", lambda path: f"some avg10={pressure} avg60=0 avg300=0 total=0\n")
    assert parallel.spare_core() is spare


def test_without_pressure_figures_the_load_average_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2.0)
    monkeypatch.setattr(parallel, "_read", lambda path: None)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert parallel.spare_core()
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (1.6, 1.0, 1.0))
    assert not parallel.spare_core()


def test_the_second_writer_writes_whole_groups_when_a_group_ends_near_the_middle(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    renders: list[str] = []
    fork_call = export.fork_call

    def counted(function: Callable[..., Any], *args: Any) -> Any:
        renders.append(function.__name__)
        return fork_call(function, *args)

    whole = [run(GROUPED), run(HEADERLESS)]
    shrink_every_limit(monkeypatch)
    monkeypatch.setattr(export, "fork_call", counted)
    # GROUPED: ten groups of 40 rows, one ends at the middle; HEADERLESS: three, none within 5% of it.
    assert [run(GROUPED), run(HEADERLESS)] == whole
    assert renders == ["_render_groups", "_render_units"]
