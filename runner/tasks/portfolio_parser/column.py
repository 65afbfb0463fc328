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


class Column:
    """One block of a column: `values`, and `joined` (made when first asked for)."""

    def __init__(self, values: list[str]) -> None:
        self.values = values

    @cached_property
    def joined(self) -> str:
        return SEPARATOR.join(self.values)

    @property
    def has_missing(self) -> bool:
        return "" in self.values


def clean_column(raw: Sequence[str]) -> Column:
    """Values trimmed of surrounding whitespace (unlike R, which keeps it); `NA` becomes ""."""
    values = list(map(str.strip, raw))
    if "NA" in values:
        values = ["" if value == "NA" else value for value in values]
    return Column(values)
