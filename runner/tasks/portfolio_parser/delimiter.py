"""PACTA's delimiter guess (`guess_delimiter`), streamed over the file's lines.

Quoted strings (`"[^"]*"`, per physical line) are removed, then each candidate is counted per line;
a candidate qualifies only when every line has it equally often, and scores that count plus one. The
highest score wins, a tie goes to the earlier candidate, and with no qualifier the result is `,`.
A candidate found on no line qualifies too: a file whose commas vary from line to line is read with
`;` and so as one column.
Unlike R, blank and whitespace-only lines are left out (in R one blank line anywhere disqualifies
every candidate). Counting works on the raw bytes: every encoding the parser reads is ASCII-compatible
and no multi-byte character contains an ASCII byte, so the counts are those of the decoded text.
"""

from __future__ import annotations

import re

CANDIDATES = (",", ";", "\t", "|", ":")
_CANDIDATE_BYTES = tuple(candidate.encode() for candidate in CANDIDATES)
_QUOTED = re.compile(rb'"[^"\n]*"')  # never across a line: R strips quotes line by line
# Everything but the candidates and the newline, for bytes.translate(None, delete=...).
_NOT_COUNTED = bytes(byte for byte in range(256) if bytes([byte]) not in (*_CANDIDATE_BYTES, b"\n"))
BLANK_BYTES = b" \t\r\n\x0b\x0c"


class DelimiterBreak:
    """Where a candidate stops being used equally often: `count` times on `line`, not `expected`."""

    __slots__ = ("count", "delimiter", "expected", "line")

    def __init__(self, delimiter: str, line: int, count: int, expected: int) -> None:
        self.delimiter, self.line, self.count, self.expected = delimiter, line, count, expected


class DelimiterTally:
    """Per-candidate counts over lines fed in order; `best()` gives PACTA's choice."""

    def __init__(self) -> None:
        self._counts: list[int | None] = [None] * len(CANDIDATES)
        self._breaks: list[DelimiterBreak | None] = [None] * len(CANDIDATES)
        self._widest: list[tuple[int, int]] = [(0, 0)] * len(CANDIDATES)  # (most on a line, that line)
        self._lines = 0  # physical lines fed so far

    def feed(self, lines: bytes, line_count: int, *, counted: bytes | None = None) -> int:
        """Take `line_count` whole lines, each ending in `\\n` (carriage returns already turned
        into `\\n`); return how many of them are not blank. `counted` may give `lines` with all
        but the candidates and line ends removed, when there is no quote."""
        first_number, self._lines = self._lines + 1, self._lines + line_count
        if counted is not None:
            stripped, kept = lines, counted
        else:
            stripped = _QUOTED.sub(b"", lines) if b'"' in lines else lines
            kept = stripped.translate(None, delete=_NOT_COUNTED)
        first_line = kept[: kept.index(b"\n") + 1]
        # Fast path: every line holds the same candidates in the same order, at least one, so no
        # line is blank.
        if len(first_line) > 1 and kept == first_line * line_count:
            for index, candidate in enumerate(_CANDIDATE_BYTES):
                count = first_line.count(candidate)
                self._merge(index, count, first_number)
                self._widen(index, count, first_number)
            return line_count
        pairs = zip(stripped.split(b"\n"), lines.split(b"\n"), strict=True)
        nonblank = [
            (number, line) for number, (line, original) in enumerate(pairs, first_number) if original.strip(BLANK_BYTES)
        ]
        for index, candidate in enumerate(_CANDIDATE_BYTES):
            counts = [line.count(candidate) for _, line in nonblank]
            if counts:
                most = max(counts)
                self._widen(index, most, nonblank[counts.index(most)][0])
            if len(set(counts)) == 1:
                self._merge(index, counts[0], nonblank[0][0])
            else:  # find the line where it breaks
                for (number, _), count in zip(nonblank, counts, strict=True):
                    self._merge(index, count, number)
        return len(nonblank)

    def best(self) -> tuple[str, bool]:
        """(delimiter, whether every non-blank line has it equally often)."""
        scores = [
            count + 1 if count is not None and broken is None else 0
            for count, broken in zip(self._counts, self._breaks, strict=True)
        ]
        winner = scores.index(max(scores))  # which.max: the first of equal scores
        return CANDIDATES[winner], scores[winner] > 0

    def first_break(self) -> DelimiterBreak | None:
        """Of the candidates used unequally, the one most used on the first line, where it breaks."""
        broken = [(count or 0, broken) for count, broken in zip(self._counts, self._breaks, strict=True) if broken]
        return max(broken, key=lambda pair: pair[0])[1] if broken else None

    def widest(self, delimiter: str) -> tuple[int, int]:
        """(fields, line) of the line with the most fields when split at `delimiter` (quoted
        strings left out); (1, 0) when no line was fed."""
        count, line = self._widest[CANDIDATES.index(delimiter)]
        return count + 1, line

    def _widen(self, index: int, count: int, line: int) -> None:
        if count > self._widest[index][0]:
            self._widest[index] = (count, line)

    def _merge(self, index: int, count: int, line: int) -> None:
        expected = self._counts[index]
        if expected is None:
            self._counts[index] = count
        elif expected != count and self._breaks[index] is None:
            self._breaks[index] = DelimiterBreak(CANDIDATES[index], line, count, expected)
