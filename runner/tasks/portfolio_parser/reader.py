"""`read_portfolio`: PACTA's `read_portfolio_csv` for one file, in two streaming passes.

Pass 1 (sniff) reads the bytes: MD5, NUL bytes, encoding, delimiter. Pass 2 (records) reads the
records: the first decides the columns (header), every row is trimmed, checked, tallied for the
decimal mark guess and stored by group. The marks are decided once the whole column is seen; the
values are parsed with them only when each group is written (export).

A large file whose lines are records (no quoted line breaks) is split at a line start near its
middle: a forked process reads the second part while this one reads the first, and the tallies,
warnings and stored rows of the second part are then added to those of the first.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import NamedTuple

from runner.tasks.portfolio_parser.checks import RowChecks, WarningLog, check_group_names
from runner.tasks.portfolio_parser.column import SEPARATOR, Repeated, clean_column
from runner.tasks.portfolio_parser.delimiter import DelimiterBreak
from runner.tasks.portfolio_parser.encoding import choose_encoding
from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule
from runner.tasks.portfolio_parser.groups import GroupStore, SpilledStore
from runner.tasks.portfolio_parser.header import CURRENCY, ISIN, MARKET_VALUE, ColumnMap, map_columns
from runner.tasks.portfolio_parser.market_values import render_money
from runner.tasks.portfolio_parser.marks import Marks, MarkTally
from runner.tasks.portfolio_parser.parallel import fork_call, spare_core
from runner.tasks.portfolio_parser.records import RecordReader, RowBlock
from runner.tasks.portfolio_parser.rows import framed_rows
from runner.tasks.portfolio_parser.sniff import MAX_LINE_BYTES, FileFacts
from runner.tasks.portfolio_parser.transcode import as_utf8

BINARY_CHECK_BYTES = 2048  # R's has_binary_null reads this many
# Excel's column limit: no portfolio has more fields on a line. A file with more is refused after
# pass 1, before any line is split into fields.
MAX_FIELDS_PER_LINE = 16_384
# Below this a second process costs about what it saves (a fork, a pickled tally, a spill file).
SPLIT_MIN_BYTES = 4 << 20
# The share of the file the forked process reads: a little under half, as it starts later (the fork,
# its first page faults) and then writes all it read to its spill file. At one half it ended 20-25 ms
# after this one on 1,000,000 rows (of about 330 ms each).
SECOND_PART_SHARE = 0.47


class ParsedPortfolio(NamedTuple):
    """A file PACTA would import: its rows by group, the marks to read values with, warnings."""

    group_cols: list[str]
    input_entries: int
    groups: GroupStore
    marks: Marks
    warnings: WarningLog


class _Part:
    """What one process read of its part of the file."""

    def __init__(self, entries: int, tally: MarkTally, log: WarningLog) -> None:
        self.entries, self.tally, self.log = entries, tally, log


class _SpilledPart(_Part):
    def __init__(self, entries: int, tally: MarkTally, log: WarningLog, store: SpilledStore) -> None:
        super().__init__(entries, tally, log)
        self.store = store


def read_portfolio(path: Path, facts: FileFacts, work_dir: Path) -> ParsedPortfolio:
    """Read `path` (already sniffed into `facts`); PortfolioFileError names the rule it breaks.

    The caller closes `groups` once written; on error it is closed here."""
    path, facts = as_utf8(path, facts, work_dir)
    _check_facts(facts)
    encoding = choose_encoding(facts.bytes)
    store = GroupStore(work_dir)
    try:
        with RecordReader(path, encoding, facts) as records:
            first = records.first_record()
            if first is None:
                raise PortfolioFileError(Rule.NO_LINES, "the file has only blank lines")
            line, cells = first
            if len(cells) < 3 and facts.delimiter_break is not None:  # refused anyway; say why so few
                raise PortfolioFileError(Rule.COLUMN_COUNT, _delimiter_detail(len(cells), facts.delimiter_break))
            columns = map_columns([cell.strip() for cell in cells])
            wanted = [columns.index[name] for name in (ISIN, MARKET_VALUE, CURRENCY, *columns.group_cols)]
            split = _split_point(facts, records)
            later = fork_call(_read_rest, path, encoding, facts, columns, wanted, split, work_dir) if split else None
            try:
                blocks: Iterator[RowBlock] = records.blocks(columns.width, wanted, leading=_leading(wanted))
                if not columns.has_header:
                    blocks = chain([RowBlock([line], [[cells[index]] for index in wanted])], blocks)
                part = _read_blocks(blocks, store)
                if later is not None:
                    rest = later.result()
                    part.entries += rest.entries
                    part.tally.merge(rest.tally)
                    part.log.merge(rest.log)
                    store.adopt(rest.store)
            finally:
                if later is not None:
                    later.cancel()
        if part.entries == 0:
            raise PortfolioFileError(
                Rule.NO_HOLDINGS, "the file has a header row but no holdings (no line after it has any data)"
            )
        check_group_names(store, columns.group_cols, part.log)
        return ParsedPortfolio(columns.group_cols, part.entries, store, part.tally.decide(), part.log)
    except BaseException:
        store.close()
        raise


def _check_facts(facts: FileFacts) -> None:
    """The rules pass 1 can tell, before any record is read."""
    if facts.size == 0:
        raise PortfolioFileError(Rule.EMPTY, "the file is empty")
    if facts.nul_offset is not None:
        early = facts.nul_offset < BINARY_CHECK_BYTES
        where = "" if early else " (PACTA looks at the first 2,048 bytes only, and crashes)"
        raise PortfolioFileError(
            Rule.BINARY, f"the file has a NUL byte at byte {facts.nul_offset + 1}, so it is not a text file{where}"
        )
    if facts.long_line is not None:
        raise PortfolioFileError(
            Rule.LINE_TOO_LONG,
            f"line {facts.long_line:,} is longer than {MAX_LINE_BYTES:,} bytes, far longer than a portfolio's "
            "lines (a few fields each), so the file is not read; is it a portfolio CSV?",
        )
    fields, line = facts.widest
    if fields > MAX_FIELDS_PER_LINE:
        shown = "tab" if facts.delimiter == "\t" else repr(facts.delimiter)
        raise PortfolioFileError(
            Rule.TOO_MANY_FIELDS,
            f"line {line:,} has {fields:,} fields (delimiter {shown}), more than a spreadsheet has columns "
            f"({MAX_FIELDS_PER_LINE:,}); a portfolio file has 3 columns (isin, market_value, currency) or 5 "
            "and more (adding investor_name and portfolio_name)",
        )
    if facts.nonblank_lines == 0:
        raise PortfolioFileError(Rule.NO_LINES, "the file has only blank lines")


def _delimiter_detail(width: int, broken: DelimiterBreak) -> str:
    shown = "tab" if broken.delimiter == "\t" else repr(broken.delimiter)
    return (
        f"the file has {width} column(s): PACTA splits lines at the first of , ; tab | : that every "
        f"non-blank line has equally often, and {shown} is on line {broken.line} {broken.count} time(s) "
        f"but {broken.expected} time(s) on the lines before; every line needs the same number of fields"
    )


def _split_point(facts: FileFacts, records: RecordReader) -> tuple[int, int] | None:
    """A line start near the middle (SECOND_PART_SHARE), past what `records` has read, where the
    file can be cut into two parts; `records` then stops there. None for small files, ones with
    quoted line breaks, and when no core is spare (parallel.spare_core)."""
    if facts.size < SPLIT_MIN_BYTES or (facts.has_quotes and not facts.quotes_within_lines) or not spare_core():
        return None
    candidates = [point for point in facts.checkpoints if point[0] < facts.size]
    if not candidates:
        return None
    target = facts.size * (1 - SECOND_PART_SHARE)
    middle = min(candidates, key=lambda point: abs(point[0] - target))
    return middle if records.stop_at(middle[0]) else None


def _read_rest(
    path: Path,
    encoding: str,
    facts: FileFacts,
    columns: ColumnMap,
    wanted: list[int],
    start: tuple[int, int],
    work_dir: Path,
) -> _SpilledPart:
    """In the forked process: read from `start` to the end; leave the rows in a spill file."""
    store = GroupStore(work_dir, named=True)
    with RecordReader(path, encoding, facts, start=start) as records:
        part = _read_blocks(records.blocks(columns.width, wanted, leading=_leading(wanted)), store)
    return _SpilledPart(part.entries, part.tally, part.log, store.spill_all())


def _leading(wanted: list[int]) -> int:
    """How many group columns lead each line, when they are the first ones (as in PACTA's 5-column
    layout: investor, portfolio, isin, market value, currency); else 0. `wanted` is isin, market
    value, currency, then the group columns."""
    groups = sorted(wanted[3:])
    return len(groups) if groups == list(range(len(groups))) else 0


def _read_blocks(blocks: Iterator[RowBlock], store: GroupStore) -> _Part:
    """Trim, check, tally and store every block. The cyclic garbage collector is held off meanwhile:
    each block makes lists of thousands of strings, which its passes walked again and again (on
    1,000,000 rows, 2 ms a pass) looking for cycles that lists of strings cannot form."""
    part = _Part(0, MarkTally(), WarningLog())
    checks = RowChecks(part.log)
    collecting = gc.isenabled()
    gc.disable()
    try:
        for block in blocks:
            if not _read_money_block(block, part, checks, store):
                isins, values, currencies = (clean_column(column, join=True) for column in block.columns[:3])
                names = [clean_column(column) for column in block.columns[3:]]
                part.tally.feed(values)
                checks.check(block.lines, isins.values, currencies.values)
                store.add(block.lines, names, isins, values, currencies)
            part.entries += len(block.lines)
    finally:
        if collecting:
            gc.enable()
    return part


def _read_money_block(block: RowBlock, part: _Part, checks: RowChecks, store: GroupStore) -> bool:
    """The usual block, in fewer steps: one sub-portfolio (the names agree down the block), every
    market value money (digits, a point, two digits: market_values.render_money), and the isins
    and currencies clean as read (RowChecks.as_written). Nothing in it is then trimmed, missing or
    warned about but invalid isins and unknown currencies; its rows are rendered now, as they are
    written when the column's decimal mark is a point (export._render_piece). False, having
    stored nothing, for any other block."""
    isins, values, currencies, *columns = block.columns
    if isinstance(isins, Repeated) or isinstance(values, Repeated) or isinstance(currencies, Repeated):
        return False
    names = [column if isinstance(column, Repeated) else _repeated(column) for column in columns]
    if None in names:
        return False
    joined = SEPARATOR.join(values)
    framed = render_money(joined, len(values))
    if framed is None or not checks.as_written(isins, currencies):
        return False
    part.tally.feed_money()
    checks.check(block.lines, isins, currencies)
    group = [clean_column(name) for name in names if name is not None]
    store.add_rendered(block.lines, group, joined, framed_rows(isins, framed, currencies))
    return True


def _repeated(column: Sequence[str]) -> Repeated | None:
    """`column` as one value repeated, when all its values are equal (as read, untrimmed)."""
    return Repeated(column[0], len(column)) if column and column.count(column[0]) == len(column) else None
