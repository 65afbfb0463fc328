"""A block of one column's values, trimmed, both as a list and joined into one string.

Most per-row work is done on the joined string with C-speed string methods, and rows are stored
joined (a few bytes a row, cheap to spill). A missing value is the empty string: trimmed `""` and
`NA` are what readr reads as NA, and no present value is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

SEPARATOR = "\x00"  # between values; a file with a NUL byte is refused before it is read
NA_STRINGS = ("", "NA")  # readr's default `na`
# The ASCII characters `str.strip()` removes.
_ASCII_SPACE = "".join(char for char in map(chr, range(128)) if char.isspace())


class Repeated:
    """One raw value standing for every row of a block: a leading column all of whose lines agree
    (the names, in a file sorted by portfolio), read once rather than per row."""

    __slots__ = ("count", "value")

    def __init__(self, value: str, count: int) -> None:
        self.value, self.count = value, count


class Column:
    """One block of a column: `values`, and `joined` (made when first asked for)."""

    def __init__(self, values: list[str]) -> None:
        self.values = values

    @cached_property
    def joined(self) -> str:
        return SEPARATOR.join(self.values)

    @property
    def has_missing(self) -> bool:
        """Whether a value is missing (empty); found in the joined text, not value by value."""
        joined = self.joined
        return bool(self.values) and (not self.values[0] or not self.values[-1] or SEPARATOR * 2 in joined)


def clean_column(raw: Sequence[str] | Repeated, *, join: bool = False) -> Column:
    """Values trimmed of surrounding whitespace (unlike R, which keeps it); `NA` becomes "".
    `join`: the column will be joined anyway; join it first, and when the joined text holds no
    whitespace at all (most blocks of ISINs, values, currencies) no value needs trimming."""
    if isinstance(raw, Repeated):
        value = raw.value.strip()
        return Column(["" if value == "NA" else value] * raw.count)
    if join and isinstance(raw, list):
        joined = SEPARATOR.join(raw)
        if not has_space(joined):
            if "NA" in joined and _holds_na(joined):  # not `"NA" in raw`: a compare per value
                return Column(["" if value == "NA" else value for value in raw])
            column = Column(raw)
            column.__dict__["joined"] = joined  # the cached_property's value
            return column
    values = list(map(str.strip, raw))
    if "NA" in values:
        values = ["" if value == "NA" else value for value in values]
    return Column(values)


def has_space(text: str) -> bool:
    """Whether `text` may hold whitespace `str.strip()` removes: some ASCII whitespace, or any
    character outside ASCII (looked for only in ASCII text, one character at a time)."""
    return not text.isascii() or any(char in text for char in _ASCII_SPACE)


def _holds_na(joined: str) -> bool:
    """Whether a value of the joined column is `NA` (ISINs often hold the letters)."""
    na = "NA" + SEPARATOR
    return joined == "NA" or joined.startswith(na) or joined.endswith(SEPARATOR + "NA") or SEPARATOR + na in joined
