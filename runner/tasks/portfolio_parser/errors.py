"""Why a portfolio file cannot be imported: one rule code and a sentence naming the line or column."""

from __future__ import annotations

from enum import StrEnum

from runner.text import shorten

# `error_detail` travels in the manifest, the result document and (for a few files) the completion
# message; the sentence it normally is fits many times over.
MAX_DETAIL_CHARS = 1000


class Rule(StrEnum):
    """The rule a refused file broke; the manifest carries it as `error_rule`."""

    UNREADABLE = "unreadable"  # the file could not be opened or read
    EMPTY = "empty"  # zero bytes
    BINARY = "binary"  # a NUL byte
    BAD_ENCODING = "bad_encoding"  # UTF-16 or UTF-32 that does not decode
    LINE_TOO_LONG = "line_too_long"  # a line longer than any portfolio's (sniff.MAX_LINE_BYTES)
    TOO_MANY_FIELDS = "too_many_fields"  # more fields on a line than a spreadsheet has columns
    NO_LINES = "no_lines"  # only blank lines
    BAD_CSV = "bad_csv"  # a field the CSV reader cannot take (an unclosed quote)
    FIELD_COUNT = "field_count"  # lines with different numbers of fields
    COLUMN_COUNT = "column_count"  # not 3 and not at least 5 columns
    MISSING_COLUMNS = "missing_columns"  # no isin, market_value or currency column
    DUPLICATE_COLUMNS = "duplicate_columns"  # two columns for one required field
    NO_HOLDINGS = "no_holdings"  # a header and nothing else
    DECIMAL_MARK = "decimal_mark"  # both `.` and `,` only ever group thousands
    INTERNAL = "internal_error"  # a bug in this parser; the file is refused, the run goes on


class PortfolioFileError(Exception):
    """The file is not an importable portfolio; `detail` says which rule it broke, and where (at most
    MAX_DETAIL_CHARS characters, a longer one cut with a marker saying how much)."""

    def __init__(self, rule: Rule, detail: str) -> None:
        detail = shorten(detail, MAX_DETAIL_CHARS)
        super().__init__(detail)
        self.rule = rule
        self.detail = detail

    def __reduce__(self) -> tuple[type[PortfolioFileError], tuple[Rule, str]]:
        return PortfolioFileError, (self.rule, self.detail)  # pickled between processes
