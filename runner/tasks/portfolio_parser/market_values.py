"""Market values, raw text to the bytes R writes for them, a block at a time.

The exact route parses each value as readr does (number_parsing) and formats the double as R does
(r_format). Most columns hold plain decimals (`12345.67`, `1,000.5`, `-3`), and for those the output
is a function of the text alone: with at most 15 significant digits and 2 decimals, readr's double
is within 3 units in the last place of the decimal, far inside what 15-digit rounding absorbs, so R
writes the decimal itself, leading zeros and trailing fractional zeros dropped, unless scientific
notation is narrower (integers ending in five or more zeros). That route works on the whole block
joined into one string, with C-speed string operations, and falls back to the exact route as soon as
any value in the block is not plain.
"""

from __future__ import annotations

import math
import re
from itertools import compress, count, repeat

from runner.tasks.portfolio_parser.column import SEPARATOR
from runner.tasks.portfolio_parser.marks import Marks
from runner.tasks.portfolio_parser.number_parsing import parse_market_value
from runner.tasks.portfolio_parser.r_format import format_r_double

_PLAIN_BYTES = b"0123456789.-\x00"
_DIGITS = b"0123456789"
_LEADING_ZERO = re.compile("\x00-?0[0-9]")
# At most 13 integer digits (and 2 decimals): at most 15 significant digits.
_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9999999999")
_TOO_MANY_DIGITS = b"9" * 14
# For the money check: b"1" where a point is (or where a value ends), b"0" elsewhere; and the two
# characters a value's integer part may not start with (`.5`, `012`) both as `z`.
_POINTS = bytes(ord("1") if byte == ord(".") else ord("0") for byte in range(256))
_ENDS = bytes(ord("1") if byte == 0 else ord("0") for byte in range(256))
_ODD_STARTS = bytes.maketrans(b"0.", b"zz")
# Remembered results of the exact route (repeated values are common); bounded.
_CACHE_LIMIT = 100_000


class RenderedValues:
    """Output fields of a block, and which rows deserve a warning (indices into the block)."""

    __slots__ = ("fields", "negative", "unparseable")

    def __init__(self, fields: list[str], *, negative: list[int] | None = None) -> None:
        self.fields = fields
        self.unparseable: list[int] = []
        self.negative = negative if negative is not None else []


def render_values(joined: str, marks: Marks) -> RenderedValues:
    """The `write.csv` field of each value of a block joined by SEPARATOR ("" is missing)."""
    return _render_plain(joined, marks) or _render_exact(joined.split(SEPARATOR), marks)


def decimal_conflicts(joined: str, marks: Marks) -> list[int]:
    """Rows whose value can only mean the other decimal mark: it holds `.` (or `,`) exactly once,
    followed by other than three digits (`1234,5` in a column read with a decimal point)."""
    other = "," if marks.decimal == "." else "."
    if other not in joined:
        return []
    pattern = re.compile(re.escape(other) + "(?:[0-9]{1,2}|[0-9]{4,})(?![0-9])")
    rows: list[int] = []
    row, scanned = 0, 0
    values: list[str] | None = None
    for match in pattern.finditer(joined):
        row += joined.count(SEPARATOR, scanned, match.start())
        scanned = match.start()
        values = values or joined.split(SEPARATOR)
        if (not rows or rows[-1] != row) and values[row].count(other) == 1:
            rows.append(row)
    return rows


def _render_plain(joined: str, marks: Marks) -> RenderedValues | None:
    """The string route, or None when some value is not a plain decimal."""
    if not joined.isascii():
        return None
    if marks.grouping in joined:
        if marks.grouping in "-eE":  # removing it would change where readr's number starts or ends
            return None
        joined = joined.replace(marks.grouping, "")
    if marks.decimal == ",":
        if "." in joined:  # with a decimal comma a point ends the number: not plain
            return None
        joined = joined.replace(",", ".")
    if (cents := _render_cents(joined)) is not None:
        return cents
    padded = SEPARATOR + joined + SEPARATOR
    encoded = joined.encode()
    if encoded.translate(None, delete=_PLAIN_BYTES):
        return None
    # Each test is a pass over the bytes or a substring search, not a regex run at every value:
    # the digits as nines (14 in a row: too many; a point and three: three decimals), the digits
    # removed (two points with only digits between them: `\.[0-9]*\.`).
    nines = encoded.translate(_DIGITS_AS_NINES)
    if (
        _TOO_MANY_DIGITS in nines
        or b".999" in nines
        or b".." in encoded.translate(None, delete=_DIGITS)
        or padded.count("-") != padded.count("\x00-")
        or any(empty in padded for empty in ("\x00-\x00", "\x00.\x00", "\x00-.\x00"))
        or (("\x000" in padded or "\x00-0" in padded) and _LEADING_ZERO.search(padded))
    ):
        return None
    if "\x00." in padded or "\x00-." in padded:  # readr reads .5 as 0.5
        padded = padded.replace("\x00.", "\x000.").replace("\x00-.", "\x00-0.")
    fields = padded[1:-1].split(SEPARATOR)
    stripped: list[int] = []
    if "." in padded:  # a fraction ending in zeros loses them, and then a bare point
        for row in compress(count(), map(str.endswith, fields, repeat(("0", ".")))):
            if "." in fields[row]:
                fields[row] = fields[row].rstrip("0").rstrip(".")
                stripped.append(row)
    if "-" in padded and "-0" in fields:  # R prints minus zero as 0
        fields = ["0" if text == "-0" else text for text in fields]
    if "00000" in padded:  # an integer ending in five or more zeros may be narrower in scientific notation
        _scientific(fields, rows_ending(padded, "00000\x00") + stripped)
    negative = [row for row, text in enumerate(fields) if text.startswith("-")] if "-" in padded else []
    return RenderedValues(fields, negative=negative)


def render_money(joined: str, count: int) -> list[str] | None:
    """A block of money (`_render_cents`'s column, `count` values) as write.csv writes it with a
    decimal point, each value with what stands around it in its output line: `",1234.5,"` (see
    rows.py); None when some value is not money. One more replacement makes every field so."""
    padded = _cents_padded(joined, count)
    if padded is None:
        return None
    fields = padded.replace(SEPARATOR, ',"' + SEPARATOR + '",')[3:-3].split(SEPARATOR)
    if "00000\x00" in padded:  # may be narrower in scientific notation
        for row in rows_ending(padded, "00000\x00"):
            value = fields[row][2:-2]
            if value.endswith("00000"):
                fields[row] = '",' + format_r_double(float(value)) + ',"'
    return fields


def _render_cents(joined: str) -> RenderedValues | None:
    """The usual column, all money: every value digits, a point and two digits (`1234.50`), at
    most 13 digits before the point, none of them a leading zero; else None."""
    padded = _cents_padded(joined, joined.count(SEPARATOR) + 1)
    if padded is None:
        return None
    fields = padded[1:-1].split(SEPARATOR)
    if "00000\x00" in padded:
        _scientific(fields, rows_ending(padded, "00000\x00"))
    return RenderedValues(fields)


def _cents_padded(joined: str, values: int) -> str | None:
    """`_render_cents`'s column (`values` values) with the zeros stripped off every fraction, between
    separators; None when some value is not money. Passes over the bytes and a few substring
    searches tell it, and two replacements strip the zeros: `x.d0` -> `x.d`, then `x.0` -> `x`."""
    encoded = joined.encode()
    # Without the digits, every value is one point: no other character, no second point.
    if encoded.translate(None, delete=_DIGITS) != (b".\x00" * values)[:-1]:
        return None
    starts = encoded.translate(_ODD_STARTS)
    padded = SEPARATOR + joined + SEPARATOR
    if (starts.startswith(b"z") or b"\x00z" in starts) and (
        "\x00." in padded or _LEADING_ZERO.search(padded)  # `.50` (the general route reads 0.50), `012.50`
    ):
        return None
    # With one point and a digit before it in every value, two decimals each is: every point
    # stands three places before the end of its value (the marks, shifted, are equal).
    if (
        encoded.translate(_POINTS)[:-2] != (encoded + b"\x00").translate(_ENDS)[3:]
        or b"." in encoded[-2:]
        or _TOO_MANY_DIGITS in encoded.translate(_DIGITS_AS_NINES)
    ):
        return None
    return padded.replace("0\x00", "\x00").replace(".0\x00", "\x00")


def _scientific(fields: list[str], rows: list[int]) -> None:
    """Among `rows`, integers ending in five or more zeros, which may be narrower in scientific
    notation, as R writes them."""
    for row in rows:
        if fields[row].endswith("00000"):
            fields[row] = format_r_double(float(fields[row]))


def rows_ending(padded: str, ending: str) -> list[int]:
    """Rows whose value ends with `ending` (which ends in the separator), in a block joined as
    separator, value 0, separator, value 1, ..., separator; found with C-speed searches."""
    rows: list[int] = []
    separators, scanned = 0, 0
    position = padded.find(ending, 1)
    while position != -1:
        end = position + len(ending) - 1  # the separator after the value
        separators += padded.count(SEPARATOR, scanned, end)
        scanned = end
        rows.append(separators - 1)
        position = padded.find(ending, end + 1)
    return rows


_cache: dict[tuple[str, str, str], float | None] = {}


def _render_exact(values: list[str], marks: Marks) -> RenderedValues:
    rendered = RenderedValues([])
    for row, text in enumerate(values):
        if not text:
            rendered.fields.append("")
            continue
        key = (text, marks.decimal, marks.grouping)
        if key in _cache:
            number = _cache[key]
        else:
            number = parse_market_value(text, marks.decimal, marks.grouping)
            if len(_cache) >= _CACHE_LIMIT:
                _cache.clear()
            _cache[key] = number
        if number is None:
            rendered.unparseable.append(row)
            rendered.fields.append("")
        elif math.isnan(number):
            rendered.fields.append("")  # write.table writes NaN as its NA string
        else:
            if number < 0:
                rendered.negative.append(row)
            rendered.fields.append(format_r_double(number))
    return rendered
