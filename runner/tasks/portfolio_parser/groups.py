"""Rows by sub-portfolio (dplyr's `group_by(portfolio_name, investor_name)`), in bounded memory.

Each group keeps its rows in file order as pieces: the isin, market value and currency columns
joined into strings, and the line numbers; or, for a block rendered when read, its output lines and
its market values. Past `BUFFERED_ROWS` rows in memory, every buffered
piece is appended to a spill file and read back, a piece at a time, when its group is written, so
memory does not grow with the file. A store can take over the spilled pieces of another (the other
half of the file, parsed in another process). Groups come out as dplyr orders them: ascending by
each key in C locale (code point) order, NA last.
"""

from __future__ import annotations

import marshal
import os
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import compress, islice, repeat
from operator import add, itemgetter, mul, ne, or_
from pathlib import Path
from typing import IO, NamedTuple, Union

from runner.tasks.portfolio_parser.column import SEPARATOR, Column

GroupKey = tuple[str | None, ...]
# The line of each row of a piece: a range when they follow one another (no blank line between
# them: a few bytes, however many rows), else each one.
Lines = Union["array[int]", range]
# About 10 MB of portfolio rows; a 200,000-row file of typical rows spills nothing.
BUFFERED_ROWS = 250_000
# More key changes than this in one block: its groups are interleaved, not one after the other.
MAX_RUNS = 1_000


class GroupPiece:
    """Consecutive rows (in file order) of one group. `rendered`: their output lines, made when
    read for a decimal point (rows.py; `isins` and `currencies` are then empty, and in them)."""

    __slots__ = ("count", "currencies", "isins", "lines", "rendered", "values")

    def __init__(
        self, lines: Lines, isins: str, values: str, currencies: str, count: int, rendered: bytes | None = None
    ) -> None:
        self.lines, self.isins, self.values, self.currencies = lines, isins, values, currencies
        self.count, self.rendered = count, rendered


class Spilled:
    """Where a piece was written: the spill file (an index into the store's files), offset,
    length; and its number of rows."""

    __slots__ = ("count", "file", "length", "offset")

    def __init__(self, file: int, offset: int, length: int, count: int) -> None:
        self.file, self.offset, self.length, self.count = file, offset, length, count


class SpilledStore(NamedTuple):
    """Everything a store held, written to `path`: each group's pieces and row count."""

    path: str
    pieces: dict[GroupKey, list[tuple[int, int, int]]]  # offset, length, rows
    counts: dict[GroupKey, int]


class GroupStore:
    """Collects rows by group key; `keys()` in dplyr's order, `pieces(key)` in file order."""

    def __init__(self, spill_dir: Path, *, named: bool = False) -> None:
        """`named`: the spill file stays on disk when closed, for `spill_all` (removing it is up
        to whoever removes `spill_dir`)."""
        self._spill_dir = spill_dir
        self._limit = BUFFERED_ROWS
        self._named = named
        self._pieces: dict[GroupKey, list[GroupPiece | Spilled]] = {}
        self._counts: dict[GroupKey, int] = {}
        self._buffered_rows = 0
        self._files: list[IO[bytes]] = []
        self._own_file: int | None = None  # index in _files of this store's spill file

    def add(self, lines: Sequence[int], names: list[Column], isins: Column, values: Column, currencies: Column) -> None:
        """A block of rows; `names` are its group columns (none: one group)."""
        count = len(lines)
        columns = [name.values for name in names]
        data = (isins, values, currencies)
        if all(column.count(column[0]) == count for column in columns):  # the usual case: one group
            piece = GroupPiece(_lines(lines), isins.joined, values.joined, currencies.joined, count)
            self._keep(_group_key(columns, 0), piece)
        elif runs := _runs(columns, count):  # groups one after the other
            for start, stop in runs:
                isin, value, currency = (SEPARATOR.join(column.values[start:stop]) for column in data)
                piece = GroupPiece(_lines(lines[start:stop]), isin, value, currency, stop - start)
                self._keep(_group_key(columns, start), piece)
        else:  # rows of groups interleaved: sort the rows by group, file order kept within each
            self._add_interleaved(lines, columns, data)
        if self._buffered_rows > self._limit:
            self._spill()

    def add_rendered(self, lines: Sequence[int], names: list[Column], values: str, rendered: bytes) -> None:
        """A block of rows of one group (`names` agree down it) already rendered as output lines
        (`rendered`, for a decimal point), with their market values as read, joined."""
        piece = GroupPiece(_lines(lines), "", values, "", len(lines), rendered)
        self._keep(_group_key([name.values for name in names], 0), piece)
        if self._buffered_rows > self._limit:
            self._spill()

    def ordered_keys(self) -> list[GroupKey]:
        return sorted(self._counts, key=lambda key: tuple((value is None, value or "") for value in key))

    def count(self, key: GroupKey) -> int:
        return self._counts[key]

    def pieces(self, key: GroupKey) -> Iterator[GroupPiece]:
        for index in range(len(self._pieces.get(key, []))):
            yield self.piece(key, index)

    def first_line(self, key: GroupKey) -> int:
        """The line of the group's first row (its first piece holds its earliest rows)."""
        return self.piece(key, 0).lines[0]

    def plan(self) -> list[tuple[GroupKey, int, int]]:
        """(key, piece index, rows) of every piece, groups in order, pieces in file order."""
        keys = self.ordered_keys()
        return [(key, index, piece.count) for key in keys for index, piece in enumerate(self._pieces[key])]

    def piece(self, key: GroupKey, index: int) -> GroupPiece:
        piece = self._pieces[key][index]
        if isinstance(piece, GroupPiece):
            return piece
        data = os.pread(self._files[piece.file].fileno(), piece.length, piece.offset)  # no shared file position
        lines, isins, values, currencies, count, rendered = marshal.loads(data)
        numbers = range(*lines) if isinstance(lines, tuple) else array("q", lines)
        return GroupPiece(numbers, isins, values, currencies, count, rendered)

    def spill_all(self) -> SpilledStore:
        """Write every piece to the spill file (a `named` store's) and say where each is."""
        if not self._named:
            raise ValueError("spill_all needs a store made with named=True")
        self._spill()
        pieces = {
            key: [(piece.offset, piece.length, piece.count) for piece in entries if isinstance(piece, Spilled)]
            for key, entries in self._pieces.items()
        }
        assert self._own_file is not None
        return SpilledStore(str(self._files[self._own_file].name), pieces, dict(self._counts))

    def adopt(self, other: SpilledStore) -> None:
        """Append another store's pieces (rows that come later in the file) to these groups."""
        if not other.path:
            return
        file = len(self._files)
        self._files.append(open(other.path, "rb"))  # noqa: SIM115  # closed by close()
        for key, located in other.pieces.items():
            self._pieces.setdefault(key, []).extend(Spilled(file, *place) for place in located)
            self._counts[key] = self._counts.get(key, 0) + other.counts[key]

    def close(self) -> None:
        for file in self._files:
            file.close()

    def _keep(self, key: GroupKey, piece: GroupPiece) -> None:
        self._pieces.setdefault(key, []).append(piece)
        self._counts[key] = self._counts.get(key, 0) + piece.count
        self._buffered_rows += piece.count

    def _add_interleaved(self, lines: Sequence[int], columns: list[list[str]], data: tuple[Column, ...]) -> None:
        # Each row's group as a number, made with C-level maps: a number per distinct value of each
        # name column, combined (numbers below 257 are shared objects, so nothing is allocated).
        distinct = [list(dict.fromkeys(column)) for column in columns]
        ids: list[int] = [0] * len(lines)
        for column, values in zip(columns, distinct, strict=True):
            number_of = {value: number for number, value in enumerate(values)}
            ids = list(map(add, map(mul, ids, repeat(len(values))), map(number_of.__getitem__, column)))
        reorder = itemgetter(*sorted(range(len(ids)), key=ids.__getitem__))  # sorted() is stable
        reordered = [reorder(column.values) for column in data]
        sorted_lines = reorder(lines)
        sizes = Counter(ids)
        start = 0
        for group in sorted(sizes):  # the order the rows were sorted in
            stop = start + sizes[group]
            isin, value, currency = (SEPARATOR.join(column[start:stop]) for column in reordered)
            piece = GroupPiece(array("q", sorted_lines[start:stop]), isin, value, currency, stop - start)
            self._keep(_group_key(columns, ids.index(group)), piece)
            start = stop

    def _spill(self) -> None:
        """Write the buffered pieces to this store's own spill file."""
        if self._own_file is None:
            self._own_file = len(self._files)
            spill_file = (  # closed by close(); a named one is removed with the spill directory
                tempfile.NamedTemporaryFile(dir=self._spill_dir, prefix="groups-", delete=False)  # noqa: SIM115
                if self._named
                else tempfile.TemporaryFile(dir=self._spill_dir, prefix="groups-")  # noqa: SIM115
            )
            self._files.append(spill_file)
        file = self._own_file
        spill = self._files[file]
        spill.seek(0, 2)
        for entries in self._pieces.values():
            for index, piece in enumerate(entries):
                if isinstance(piece, GroupPiece):
                    lines = piece.lines
                    spilled = (lines.start, lines.stop) if isinstance(lines, range) else lines.tobytes()
                    fields = (spilled, piece.isins, piece.values, piece.currencies, piece.count, piece.rendered)
                    data = marshal.dumps(fields)
                    entries[index] = Spilled(file, spill.tell(), len(data), piece.count)
                    spill.write(data)
        spill.flush()
        self._buffered_rows = 0


def _lines(lines: Sequence[int]) -> Lines:
    return lines if isinstance(lines, range) else array("q", lines)


def _group_key(columns: list[list[str]], row: int) -> GroupKey:
    """The key of `row`; a missing name ("") is None."""
    return tuple(column[row] or None for column in columns)


def _runs(columns: list[list[str]], count: int) -> list[tuple[int, int]] | None:
    """(start, stop) of each run of equal keys, when no key has two runs (the rows of each group
    are consecutive); else None. Key changes are found with C-level iterators, not a Python loop."""
    sample = min(count, 4 * MAX_RUNS)
    early = sum(sum(map(ne, column[1:sample], column[: sample - 1])) for column in columns)
    if early > MAX_RUNS:
        return None  # interleaved already in its first rows
    changed = map(ne, columns[0][1:], columns[0][:-1])
    for column in columns[1:]:
        changed = map(or_, changed, map(ne, column[1:], column[:-1]))
    starts = [0, *islice(compress(range(1, count), changed), MAX_RUNS + 1)]
    if len(starts) > MAX_RUNS or len({tuple(column[start] for column in columns) for start in starts}) < len(starts):
        return None
    return list(zip(starts, [*starts[1:], count], strict=True))
