"""Pass 2: the file's records, in blocks of columns, with the physical line each row starts on.

Two tokenizers give the same rows. A file without any `"`, whose non-blank lines all hold the same
number of delimiters (pass 1 knows both), is split with `str.split` a megabyte at a time: every
line is a row of the same width, so one split of the whole block and a stride per column suffice.
Any other file goes through the `csv` module (quoted fields, doubled quotes, line breaks inside
quotes), four thousand rows (at most a hundred thousand fields) at a time. Blank and whitespace-only
lines are skipped by both (R fails the whole file).
"""

from __future__ import annotations

import csv
import gc
import io
import os
import re
from collections.abc import Iterator, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from runner.tasks.portfolio_parser.column import Repeated
from runner.tasks.portfolio_parser.encoding import decode_errors
from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule
from runner.tasks.portfolio_parser.sniff import FileFacts

CHUNK_BYTES = 1 << 17
CSV_BLOCK_ROWS = 4_000
# Fewer rows a block when they are wide: a block holds at most this many fields (16,384 columns,
# the most the reader lets through, make 6-row blocks).
CSV_BLOCK_FIELDS = 100_000
BLANK = " \t\r\n\x0b\x0c"  # the same whitespace pass 1 calls blank
_BLANK_LINE = re.compile(r"\n[ \t\r\x0b\x0c]*\n")
_CSV_FIELD_LIMIT = csv.field_size_limit()
# Below CPython's 30,000-character bound for its two-way search (_replace_line_prefix).
_REPLACE_PIECE_CHARS = 29_000


class RowBlock(NamedTuple):
    """Consecutive rows: `columns[i]` holds the raw values of the i-th requested column."""

    lines: Sequence[int]  # a range when no blank line is among them
    columns: list[Sequence[str] | Repeated]


class RecordReader:
    """Reads one file's records once: `first_record()`, then `blocks()` for the rest.

    It may read a part of the file only: from `start` (a line start, with the number of lines
    before it) up to `stop` (a line start), for one process of a split parse."""

    def __init__(
        self, path: Path, encoding: str, facts: FileFacts, *, start: tuple[int, int] = (0, 0), stop: int | None = None
    ) -> None:
        self._range = _ByteRange(path, start[0], facts.size if stop is None else stop)
        self._binary: BinaryIO = io.BufferedReader(self._range)
        if start[0] and encoding == "utf-8-sig":
            encoding = "utf-8"  # a byte order mark only opens the file
        self._encoding = encoding
        self._text = io.TextIOWrapper(self._binary, encoding=encoding, errors=decode_errors(encoding), newline="")
        self._delimiter = facts.delimiter
        self._blank_lines = facts.has_blank_lines
        self._flat = not facts.has_quotes and facts.delimiter_consistent and not facts.has_lone_cr
        self._line = start[1]  # physical lines consumed so far
        self._rest = ""  # flat mode: text read past the first record
        self._chunks = self._text_chunks()
        self._rows = csv.reader(self._text, delimiter=self._delimiter, strict=False)

    def close(self) -> None:
        self._text.close()

    def stop_at(self, offset: int) -> bool:
        """Read no further than byte `offset` (a line start); False if already read past it."""
        return self._range.stop_at(offset)

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def first_record(self) -> tuple[int, list[str]] | None:
        """The first non-blank record and its line, or None when there is none."""
        if self._flat:
            for text in self._chunks:
                start = 0
                while start < len(text):
                    end = text.index("\n", start)
                    self._line += 1
                    if text[start:end].strip(BLANK):
                        self._rest = text[end + 1 :]
                        return self._line, text[start:end].split(self._delimiter)
                    start = end + 1
            return None
        return next(self._csv_rows(), None)

    def blocks(self, width: int, wanted: list[int], *, leading: int = 0) -> Iterator[RowBlock]:
        """The remaining rows, `width` fields each, as blocks of the `wanted` columns. `leading`:
        the first columns, all wanted, that are likely equal down a block (a sorted file's names);
        where they are, the flat route gives them as `Repeated`."""
        if self._flat:
            for text in chain([self._rest], self._chunks):
                if block := self._flat_block(text, width, wanted, leading):
                    yield block
            return
        while rows := self._csv_chunk(max(1, min(CSV_BLOCK_ROWS, CSV_BLOCK_FIELDS // width))):
            numbers = self._csv_lines(rows)
            if self._blank_lines:
                kept = [(number, row) for number, row in zip(numbers, rows, strict=True) if not self._is_blank(row)]
                numbers, rows = [number for number, _ in kept], [row for _, row in kept]
            if rows and set(map(len, rows)) != {width}:
                number, row = next(pair for pair in zip(numbers, rows, strict=True) if len(pair[1]) != width)
                raise PortfolioFileError(
                    Rule.FIELD_COUNT,
                    f"line {number} has {len(row)} field(s) but the first line has {width} "
                    f"(delimiter {self._delimiter!r}); every line needs the same number of fields",
                )
            if rows:
                columns = list(zip(*rows, strict=True))
                yield RowBlock(numbers, [columns[index] for index in wanted])

    def _csv_chunk(self, count: int) -> list[list[str]]:
        """The next `count` rows from the csv reader, taken by C-level iteration. The cyclic garbage
        collector is held off meanwhile: each row is a new list, and tens of thousands of them
        would set it scanning again and again for cycles that lists of strings cannot form."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return list(islice(self._rows, count))
        except csv.Error as error:
            raise PortfolioFileError(Rule.BAD_CSV, _csv_error_detail(self._rows.line_num, error)) from None
        finally:
            if collecting:
                gc.enable()

    def _csv_lines(self, rows: list[list[str]]) -> Sequence[int]:
        """The line each row starts on. Usually a row is a line; a quoted field may hold line
        breaks, and then the rows are walked one by one."""
        first, self._line = self._line + 1, self._rows.line_num
        if self._line - first + 1 == len(rows):
            return range(first, self._line + 1)
        numbers: list[int] = []
        for row in rows:
            numbers.append(first)
            text = "".join(row)
            first += 1 + text.count("\n") + text.count("\r") - text.count("\r\n")
        return numbers

    def _is_blank(self, row: list[str]) -> bool:
        """An empty or whitespace-only line (a tab-delimited one gives several blank fields)."""
        return not row or (
            (len(row) == 1 or self._delimiter in BLANK) and not any(field.strip(BLANK) for field in row)
        )

    def _text_chunks(self) -> Iterator[str]:
        """Whole lines of decoded text, CRLF turned into LF, about a megabyte at a time. Bytes are
        cut at a line feed, which no multi-byte character of these encodings contains."""
        carry = b""
        encoding, errors = self._encoding, decode_errors(self._encoding)
        while part := self._binary.read(CHUNK_BYTES):
            data = carry + part
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                yield _lines_text(data[:cut], encoding, errors)
                encoding = "utf-8" if encoding == "utf-8-sig" else encoding  # a BOM only opens the file
        if carry:
            yield _lines_text(carry + b"\n", encoding, errors)

    def _flat_block(self, text: str, width: int, wanted: list[int], leading: int) -> RowBlock | None:
        first = self._line + 1
        numbers: Sequence[int] | None = None  # known once counted: not on the usual route
        if self._blank_lines and _BLANK_LINE.search("\n" + text):
            count = text.count("\n")
            kept = [(number, line) for number, line in enumerate(text.split("\n")[:count], first) if line.strip(BLANK)]
            numbers = [number for number, _ in kept]
            text = "".join(line + "\n" for _, line in kept)
            self._line += count
            if not numbers:
                return None
        if leading and (read := self._leading_columns(text, first, width, wanted, leading)):
            lines, columns = read
            if numbers is None:
                numbers = range(first, first + lines)
                self._line += lines
            if len(numbers) != lines:
                raise PortfolioFileError(Rule.INTERNAL, f"lines {first}-{self._line} changed while being read")
            return RowBlock(numbers, columns)
        if numbers is None:
            count = text.count("\n")
            numbers = range(first, first + count)
            self._line += count
            if not count:
                return None
        fields = text[:-1].replace("\n", self._delimiter).split(self._delimiter)
        if len(fields) != len(numbers) * width:  # pass 1 said every line has `width` fields
            raise PortfolioFileError(Rule.INTERNAL, f"lines {first}-{self._line} changed while being read")
        return RowBlock(numbers, [fields[index::width] for index in wanted])

    def _leading_columns(
        self, text: str, first: int, width: int, wanted: list[int], leading: int
    ) -> tuple[int, list[Sequence[str] | Repeated]] | None:
        """(lines, the `wanted` columns) of `text` (whole lines from line `first` on, none blank, or
        from the first non-blank line) when every line starts
        with the first line's `leading` fields, which are then read once: one C-speed pass (remove)
        spares a split and a strip per row and field. None when some line differs (a portfolio
        changes in the block), or there is no line."""
        delimiter = self._delimiter
        end = -1
        for _ in range(leading):  # the first line has width - 1 > leading delimiters
            end = text.find(delimiter, end + 1)
            if end == -1:
                return None
        prefix = text[: end + 1]  # the first line's leading fields, each with its delimiter
        # Each line end followed by the prefix becomes one delimiter, and the first prefix and the
        # last line end are cut off: the other fields of every line, in one string, unless a line
        # does not start with the prefix.
        replaced = _replace_line_prefix(text, prefix, delimiter)
        if replaced is None:
            return None
        others, lines = replaced
        rest = width - leading
        fields = others[:-1].split(delimiter)
        if len(fields) != lines * rest:  # pass 1 said every line has `width` fields
            raise PortfolioFileError(Rule.INTERNAL, f"lines {first}-{first + lines - 1} changed while being read")
        firsts = text[:end].split(delimiter)
        columns: list[Sequence[str] | Repeated] = [
            Repeated(firsts[index], lines) if index < leading else fields[index - leading :: rest] for index in wanted
        ]
        return lines, columns

    def _csv_rows(self) -> Iterator[tuple[int, list[str]]]:
        """Non-blank rows with the line each starts on, one at a time (for the first record)."""
        try:
            for row in self._rows:
                start, self._line = self._line + 1, self._rows.line_num
                if not self._is_blank(row):
                    yield start, row
        except csv.Error as error:
            raise PortfolioFileError(Rule.BAD_CSV, _csv_error_detail(self._rows.line_num, error)) from None


class _ByteRange(io.RawIOBase):
    """The bytes [start, stop) of a file, read with pread (no file position shared with a fork)."""

    def __init__(self, path: Path, start: int, stop: int) -> None:
        super().__init__()
        self._descriptor = os.open(path, os.O_RDONLY)
        self._position, self._stop = start, stop

    def readable(self) -> bool:
        return True

    def stop_at(self, offset: int) -> bool:
        if offset < self._position:
            return False
        self._stop = min(self._stop, offset)
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._stop - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._descriptor, wanted, self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._descriptor)
        super().close()


def _replace_line_prefix(text: str, prefix: str, by: str) -> tuple[str, int] | None:
    """`text` (whole lines, the first starting with `prefix`) with the first prefix cut off and each
    line end followed by the prefix replaced `by` (one character), and the number of lines; None
    when a line does not start with the prefix (a line end is left, other than the last).

    The lines are counted from the length the replacements took off, not in a pass of their own.
    CPython (3.11) searches a pattern of 6 characters or more in what is left of a string over
    30,000 characters long with a set-up per search (the two-way algorithm), so one replacement
    over the whole block would pay it at every line: it is made in pieces shorter than that (a
    third less time), each cut at a line end."""
    pattern, pieces, start = "\n" + prefix, [], len(prefix)
    while start < len(text):
        stop = text.find("\n", start + _REPLACE_PIECE_CHARS)  # the next piece starts with the pattern
        stop = len(text) if stop == -1 else stop
        pieces.append(text[start:stop].replace(pattern, by))
        start = stop
    others = "".join(pieces)
    if others.find("\n", 0, len(others) - 1) != -1:
        return None
    return others, (len(text) - len(prefix) - len(others)) // (len(pattern) - len(by)) + 1


def _lines_text(data: bytes, encoding: str, errors: str) -> str:
    text = data.decode(encoding, errors)
    return text.replace("\r\n", "\n") if "\r" in text else text


def _csv_error_detail(line: int, error: csv.Error) -> str:
    if "field larger than field limit" in str(error):
        return (
            f"line {line} has a field longer than {_CSV_FIELD_LIMIT:,} characters; "
            "probably a quote (\") opens a field that is never closed"
        )
    return f"line {line} cannot be read as CSV ({error})"
