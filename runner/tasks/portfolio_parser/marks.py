"""PACTA's decimal and grouping mark guess (`guess_numerical_mark`), streamed over the column.

R reads the whole market_value column (trimmed, `""` and `NA` missing) and, for each non-digit
character c in order of first appearance:
- c may group thousands if every value containing c has, somewhere, c followed by exactly three
  digits and then a non-digit or the end (`1,000`, `1.000.000`, `$100`);
- c may be the decimal mark if no value contains it twice; but `max()` over a column with a missing
  value is NA, so one missing market value anywhere leaves no decimal candidate at all.
Decimal candidates are then limited to `.` and `,`, and (`common` = `.`, `,`):
- none: the decimal is the first common mark that cannot group; the grouping mark the first of the
  group candidates then `,` `.` space `'` `|` that is not the decimal;
- all of them can group, and there is one group candidate: that one groups, the other decimal;
- all of them can group, more than one group candidate: decimal `.` before `,`; grouping the first
  other group candidate;
- otherwise: the decimal is the first (`.` before `,`) that cannot group; grouping as in the first case.
The tally keeps, per character, only what those rules need, so the column is never held whole.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from runner.tasks.portfolio_parser.column import SEPARATOR, Column
from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule

COMMON_DECIMALS = (".", ",")
COMMON_GROUPING = (",", ".", " ", "'", "|")
_DIGIT_BYTES = b"0123456789"


class Marks(NamedTuple):
    decimal: str
    grouping: str


class _Character:
    __slots__ = ("can_group", "first_seen", "repeats")

    def __init__(self, first_seen: int) -> None:
        self.first_seen = first_seen  # order of first appearance in the column
        self.can_group = True
        self.repeats = False  # some value holds it twice or more


class MarkTally:
    """Feed the market value column block by block, in file order; then `decide()`."""

    def __init__(self) -> None:
        self._chars: dict[str, _Character] = {}
        self._any_missing = False

    def feed(self, values: Column) -> None:
        """The next block of the column (missing values are empty strings)."""
        self._any_missing = self._any_missing or values.has_missing
        joined = values.joined
        others = joined.encode("utf-8").translate(None, delete=_DIGIT_BYTES).decode("utf-8")
        found = sorted(set(others) - {SEPARATOR}, key=others.index)
        for char in found:
            tally = self._chars.setdefault(char, _Character(first_seen=len(self._chars)))
            mark = re.escape(char)
            repeats = re.search(f"{mark}[^{SEPARATOR}{mark}]*{mark}", others)
            if repeats:
                tally.repeats = True
            if tally.can_group:
                tally.can_group = _all_can_group(char, values, repeats is not None)

    def feed_money(self) -> None:
        """The next block, all of whose values are money (`market_values.render_money`: digits, a
        point and two digits each): what `feed` finds in it, without looking. `.` is in every value
        once, followed by two digits, so it is no thousands mark, and no value is missing."""
        self._chars.setdefault(".", _Character(first_seen=len(self._chars))).can_group = False

    def merge(self, later: MarkTally) -> None:
        """Take in the tally of the rest of the column (read by another process)."""
        self._any_missing = self._any_missing or later._any_missing
        for char in sorted(later._chars, key=lambda char: later._chars[char].first_seen):
            theirs = later._chars[char]
            mine = self._chars.setdefault(char, _Character(first_seen=len(self._chars)))
            mine.can_group = mine.can_group and theirs.can_group
            mine.repeats = mine.repeats or theirs.repeats

    def decide(self) -> Marks:
        """PACTA's choice; PortfolioFileError where R stops with "subscript out of bounds"."""
        ordered = sorted(self._chars, key=lambda char: self._chars[char].first_seen)
        groups = [char for char in ordered if self._chars[char].can_group]
        decimals = [
            char
            for char in ordered
            if char in COMMON_DECIMALS and not self._any_missing and not self._chars[char].repeats
        ]
        if not decimals:
            decimal = next((mark for mark in COMMON_DECIMALS if mark not in groups), None)
            if decimal is None:
                raise PortfolioFileError(
                    Rule.DECIMAL_MARK,
                    "the market_value column uses both '.' and ',' only to group thousands (as in "
                    "1,000,000 and 1.000.000), so its decimal mark cannot be told; use one convention",
                )
            return Marks(decimal, _first_other([*groups, *COMMON_GROUPING], decimal))
        if all(char in groups for char in decimals) and len(groups) == 1:
            return Marks(_first_other([*decimals, *COMMON_DECIMALS], groups[0]), groups[0])
        if all(char in groups for char in decimals):
            decimal = min(decimals, key=COMMON_DECIMALS.index)
            return Marks(decimal, _first_other(groups, decimal))
        decimal = min((char for char in decimals if char not in groups), key=COMMON_DECIMALS.index)
        return Marks(decimal, _first_other([*groups, *COMMON_GROUPING], decimal))


def _all_can_group(char: str, values: Column, repeats: bool) -> bool:
    """Every value containing `char` has `char` + three digits + a non-digit or the end."""
    good = re.compile(re.escape(char) + "[0-9]{3}(?![0-9])")
    if not repeats:  # one occurrence per value at most: counting occurrences counts values
        return values.joined.count(char) == len(good.findall(values.joined))
    return all(good.search(value) for value in values.values if char in value)


def _first_other(candidates: list[str], taken: str) -> str:
    return next(candidate for candidate in candidates if candidate != taken)
