"""Read one portfolio CSV, or say in plain words why it cannot be read.

A first version of `pacta.portfolio.import::read_portfolio_csv` (pacta-contract.md 3.2), narrower on
purpose: a header row is required; the delimiter is `,` or `;`; market values are plain decimals
whose decimal mark (`.` or `,`) is guessed per column with PACTA's rule; blank lines are skipped
rather than failing the file. Kept from R: the column-count gate (exactly 3 columns, or at least 5),
strings read untrimmed, `""` and `"NA"` read as NA, an unparseable market value read as NA.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ISIN = "isin"
MARKET_VALUE = "market_value"
CURRENCY = "currency"
PORTFOLIO_NAME = "portfolio_name"
INVESTOR_NAME = "investor_name"
REQUIRED_COLUMNS = (ISIN, MARKET_VALUE, CURRENCY)
# PACTA groups by these, in this order, when they are present.
GROUP_COLUMNS = (PORTFOLIO_NAME, INVESTOR_NAME)
# Normalised header (lowercase, no spaces, dots or underscores) -> column.
HEADER_NAMES = {
    "isin": ISIN,
    "marketvalue": MARKET_VALUE,
    "currency": CURRENCY,
    "portfolioname": PORTFOLIO_NAME,
    "investorname": INVESTOR_NAME,
}
DELIMITERS = (",", ";")
NA_STRINGS = frozenset({"", "NA"})  # readr's default `na`
DECIMAL_MARKS = (".", ",")

_QUOTED = re.compile(r'"[^"]*"')
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


class PortfolioFileError(Exception):
    """The file is not an importable portfolio; `detail` says which rule it broke."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Holding:
    isin: str | None
    market_value: float | None
    currency: str | None
    portfolio_name: str | None = None
    investor_name: str | None = None


@dataclass(frozen=True)
class PortfolioTable:
    """The rows of one file, with the grouping columns it had (PACTA's `group_cols`)."""

    holdings: list[Holding]
    group_cols: list[str]


def read_portfolio_csv(path: Path) -> PortfolioTable:
    """Read `path`; raise PortfolioFileError naming the rule the file breaks."""
    records = _read_records(_decode(path.read_bytes()))
    if not records:
        raise PortfolioFileError("the file has no lines")
    (_, header), rows = records[0], records[1:]
    columns = _map_header(header)
    for line_number, row in rows:
        if len(row) != len(header):
            raise PortfolioFileError(
                f"line {line_number} has {len(row)} fields but the header has {len(header)}"
            )
    if not rows:
        raise PortfolioFileError("the file has a header row but no holdings")
    market_values = _parse_market_values([row[columns[MARKET_VALUE]] for _, row in rows])
    holdings = [
        Holding(
            isin=_string(row[columns[ISIN]]),
            market_value=market_value,
            currency=_string(row[columns[CURRENCY]]),
            portfolio_name=_string(row[columns[PORTFOLIO_NAME]])
            if PORTFOLIO_NAME in columns
            else None,
            investor_name=_string(row[columns[INVESTOR_NAME]])
            if INVESTOR_NAME in columns
            else None,
        )
        for (_, row), market_value in zip(rows, market_values, strict=True)
    ]
    return PortfolioTable(holdings, [name for name in GROUP_COLUMNS if name in columns])


def guess_delimiter(text: str) -> str:
    """PACTA's guess, over `,` and `;`: a delimiter counts only if every line has it equally often;
    the most frequent such one wins, ties and no winner give `,` (so that a line with a field
    missing is reported as such, not as a one-column file)."""
    lines = [line for line in _QUOTED.sub("", text).splitlines() if line.strip()]
    best, best_count = DELIMITERS[0], 0
    for delimiter in DELIMITERS:
        counts = {line.count(delimiter) for line in lines}
        if len(counts) == 1 and (count := counts.pop()) > best_count:
            best, best_count = delimiter, count
    return best


def guess_decimal_mark(values: Sequence[str]) -> tuple[str, str]:
    """(decimal mark, grouping mark) for a column of market values, by PACTA's rule limited to
    `.` and `,`: a mark always followed by exactly 3 digits can group thousands; a mark found at
    most once per value can be the decimal; `1,000` and `1.000` both read as one thousand."""
    present = [mark for mark in DECIMAL_MARKS if any(mark in value for value in values)]
    groups = [mark for mark in present if _can_group(mark, values)]
    decimals = [mark for mark in present if all(value.count(mark) <= 1 for value in values)]
    if not decimals:
        decimal = next((mark for mark in DECIMAL_MARKS if mark not in groups), ".")
    elif all(mark in groups for mark in decimals):
        decimal = _other(groups[0]) if len(groups) == 1 else decimals[0]
    else:
        decimal = next(mark for mark in decimals if mark not in groups)
    return decimal, _other(decimal)


def parse_market_value(value: str, decimal: str, grouping: str) -> float | None:
    """A plain decimal number, grouping marks dropped; NA (None) when it is not one."""
    text = value.strip().replace(grouping, "").replace(decimal, ".")
    if value.strip() in NA_STRINGS or not _PLAIN_NUMBER.fullmatch(text):
        return None
    return float(text)


def _decode(data: bytes) -> str:
    if not data:
        raise PortfolioFileError("the file is empty")
    if b"\x00" in data:
        raise PortfolioFileError("the file has a NUL byte, so it is not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Spreadsheets on Windows save Windows-1252; PACTA's encoding guess accepts it too.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise PortfolioFileError("the file is neither UTF-8 nor Windows-1252 text") from None


def _read_records(text: str) -> list[tuple[int, list[str]]]:
    """Non-blank records with the line number each ends on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=guess_delimiter(text))
    try:
        return [(reader.line_num, row) for row in reader if any(field.strip() for field in row)]
    except csv.Error as error:
        raise PortfolioFileError(f"line {reader.line_num} is not valid CSV ({error})") from None


def _map_header(names: list[str]) -> dict[str, int]:
    """Column name -> index, enforcing PACTA's column-count gate and the required columns."""
    found = ", ".join(repr(name) for name in names)
    if len(names) == 4 or len(names) < 3:
        raise PortfolioFileError(
            f"the file has {len(names)} column(s) ({found}); a portfolio file has exactly 3 "
            "columns (isin, market_value, currency) or at least 5 (adding investor_name and "
            "portfolio_name)"
        )
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        column = HEADER_NAMES.get(re.sub(r"[\s._]", "", name).lower())
        if column is None or (len(names) == 3 and column not in REQUIRED_COLUMNS):
            logger.info("ignoring column %r", name)
            continue
        if column in columns:
            raise PortfolioFileError(f"the header names the {column} column twice ({found})")
        columns[column] = index
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise PortfolioFileError(
            f"the header row has no {' or '.join(missing)} column (found {found}); the first line "
            "must name the columns isin, market_value and currency"
        )
    return columns


def _parse_market_values(values: list[str]) -> list[float | None]:
    present = [value.strip() for value in values if value.strip() not in NA_STRINGS]
    decimal, grouping = guess_decimal_mark(present)
    parsed = [parse_market_value(value, decimal, grouping) for value in values]
    unreadable = [
        value
        for value, number in zip(values, parsed, strict=True)
        if number is None and value.strip() not in NA_STRINGS
    ]
    if unreadable:
        logger.warning(
            "%d market value(s) are not numbers and are kept as NA, e.g. %r (decimal mark %r)",
            len(unreadable),
            unreadable[0],
            decimal,
        )
    return parsed


def _can_group(mark: str, values: Sequence[str]) -> bool:
    bad_use = re.compile(re.escape(mark) + r"(?!\d{3}(?:\D|$))")
    return not any(bad_use.search(value) for value in values)


def _other(mark: str) -> str:
    return "," if mark == "." else "."


def _string(value: str) -> str | None:
    return None if value in NA_STRINGS else value
