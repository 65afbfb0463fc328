"""The column type readr (vroom 1.6 `guess_type`) guesses for one cell of the first line.

PACTA's `has_header` takes line 1 as a header when every cell of it guesses as character or
logical: a number (`10000`, `1,000`, `1e5`), a time (`10:30`), a date (`2024-01-31`) or a date-time
in any cell means line 1 is data. vroom tries, in order: logical, double, number, time, date,
date-time, else character, with the default locale (`.` decimal, `,` grouping, English am/pm).

Unlike readr, a number in accounting parentheses (`(33.77)`, `(1,000)`) guesses as a number, as the
parser reads such a market value (number_parsing.accounting_amount): a headerless file whose first
market value is negative so written is data, not a header.
"""

from __future__ import annotations

import math
import re

from runner.tasks.portfolio_parser.number_parsing import accounting_amount, scan_number

LOGICALS = frozenset({"T", "t", "True", "TRUE", "true", "F", "f", "False", "FALSE", "false"})
NA_STRINGS = frozenset({"", "NA"})
HEADER_TYPES = frozenset({"character", "logical"})
C_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# bsd_strtod (vroom_dbl.cc): sign, then nan/inf, or a mantissa with at most one point and an
# optional exponent whose letter may be any of EeSsFfDdLl and whose digits may be missing.
_BSD_DOUBLE = re.compile(r"[+-]?(?:(?i:nan|inf)|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[EeSsFfDdLl][+-]?[0-9]*)?)")
# What C strtod() consumes at the start of a string (seconds in a time).
_C_STRTOD = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:infinity|inf|nan(?:\([0-9A-Za-z_]*\))?))"
)
# What C strtol() consumes (the window given to it is at most 4 characters here).
_C_STRTOL = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def guess_type(cell: str) -> str:
    """readr's guess for a column whose only value is `cell`; `(x)` is "number" when x is one."""
    if cell in NA_STRINGS or cell in LOGICALS:
        return "logical"
    amount = accounting_amount(cell)
    if amount is not None:
        return "number" if _is_double(amount) or _is_number(amount) else "character"
    for name, test in (
        ("double", _is_double),
        ("number", _is_number),
        ("time", _is_time),
        ("date", _is_date),
        ("datetime", _is_datetime),
    ):
        if test(cell):
            return name
    return "character"


def is_header(cells: list[str]) -> bool:
    """PACTA's `has_header`: every cell guesses as character or logical."""
    return all(guess_type(cell) in HEADER_TYPES for cell in cells)


def _leading_zero(cell: str) -> bool:
    """Both numeric guessers refuse `0` followed by anything but the decimal mark (`007`)."""
    return cell[0] == "0" and len(cell) > 1 and cell[1] != "."


def _is_double(cell: str) -> bool:
    return not _leading_zero(cell) and _BSD_DOUBLE.fullmatch(cell) is not None


def _is_number(cell: str) -> bool:
    """parse_num in strict mode: the whole cell is one number, starting at its first character."""
    if _leading_zero(cell):
        return False
    value, start, stop = scan_number(cell, ".", ",")
    return value is not None and start == 0 and stop == len(cell)


class _Cursor:
    """vroom's DateTimeParser reading position, with its C-library quirks."""

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def done(self) -> bool:
        return self.at == len(self.text)

    def skip_space(self) -> None:
        while not self.done() and self.text[self.at] in C_SPACE:
            self.at += 1

    def char(self, wanted: str) -> bool:
        if not self.done() and self.text[self.at] == wanted:
            self.at += 1
            return True
        return False

    def integer(self, width: int, *, exact: bool = True) -> int | None:
        """consumeInteger: strtol over at most `width` characters; None when it fails."""
        if self.done() or self.text[self.at] in "+-":
            return None
        window = self.text[self.at : self.at + width]
        match = _C_STRTOL.match(window)
        used = match.end() if match else 0
        self.at += used
        if exact and used != width:
            return None
        return int(match.group()) if match else 0

    def seconds(self) -> float | None:
        """consumeDouble: strtod over the rest (refused past 64 characters or on overflow)."""
        rest = self.text[self.at :]
        if not rest or rest[0] in "+-" or len(rest) > 64:
            return None
        match = _C_STRTOD.match(rest)
        if match is None:
            return 0.0
        token = match.group().strip(C_SPACE).lower()
        try:
            value = float(token.split("(")[0]) if "x" not in token else float.fromhex(token)
        except (ValueError, OverflowError):
            return None
        if value in (float("inf"), float("-inf")) and "inf" not in token:
            return None  # ERANGE
        self.at += match.end()
        return value

    def am_pm(self) -> None:
        """consumeString: finds "am"/"pm" anywhere ahead but advances only past two characters."""
        rest = self.text[self.at :].lower()
        if "am" in rest or "pm" in rest:
            self.at += 2


def _is_time(cell: str) -> bool:
    """parse("%AT"): [h]h:mm[:ss[.s]] [am|pm]."""
    cursor = _Cursor(cell)
    cursor.skip_space()
    if cursor.integer(2, exact=False) is None or not cursor.char(":"):
        return False
    if cursor.integer(2) is None:
        return False
    cursor.char(":")
    cursor.seconds()
    cursor.skip_space()
    cursor.am_pm()
    cursor.skip_space()
    return cursor.done()


def _is_date(cell: str) -> bool:
    """parse("%AD"): yyyy-mm-dd or yyyy/mm/dd, values not checked."""
    cursor = _Cursor(cell)
    cursor.skip_space()
    if cursor.integer(4) is None:
        return False
    for width in (2, 2):
        if not (cursor.char("-") or cursor.char("/")) or cursor.integer(width) is None:
            return False
    return cursor.done()


def _is_datetime(cell: str) -> bool:
    """parseISO8601 followed by vroom's validity check of the date and time."""
    cursor = _Cursor(cell)
    year = cursor.integer(4)
    if year is None:
        return False
    compact = not cursor.char("-")
    month = cursor.integer(2)
    if month is None or (not compact and not cursor.char("-")):
        return False
    day = cursor.integer(2)
    if day is None:
        return False
    hour = minute = second = 0
    if not cursor.done():
        if cursor.text[cursor.at] not in "T ":  # the spec wants T; a space is common
            return False
        cursor.at += 1
        parsed_hour = cursor.integer(2)
        if parsed_hour is None:
            return False
        hour = parsed_hour
        cursor.char(":")
        minute = cursor.integer(2, exact=False) or 0
        cursor.char(":")
        seconds = cursor.seconds() or 0.0
        second = int(seconds) if math.isfinite(seconds) else -1  # C's (int) of NaN or Inf
        if not cursor.done() and not _tz_offset(cursor):
            return False
    return _valid_datetime(year, month, day, hour, minute, second)


def _tz_offset(cursor: _Cursor) -> bool:
    """consumeTzOffset then isComplete: Z, or [+-]hh[:][mm]."""
    if cursor.char("Z"):
        return cursor.done()
    if not cursor.done() and cursor.text[cursor.at] in "+-":
        cursor.at += 1
    if cursor.integer(2) is None:
        return False
    cursor.char(":")
    cursor.integer(2)
    return cursor.done()


def _valid_datetime(year: int, month: int, day: int, hour: int, minute: int, second: int) -> bool:
    """DateTime::validDateTime: a real calendar date (year 0 and up) and a time of day."""
    if year < 0 or not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = 29 if month == 2 and leap else _DAYS_IN_MONTH[month - 1]
    return 1 <= day <= days and 0 <= second <= 60 and 0 <= minute <= 59 and 0 <= hour <= 23
