"""Which column holds which field: PACTA's `has_header`, `determine_headers` and column-count gate.

With a header (line 1 reads as text, see readr_types), case-insensitively: `isin` is the column named
`isin`, `market_value` the one named `market value` with `.`, `_`, a space or nothing between the
words, `currency` the one named `currency`; with more than 3 columns, `investor_name` is the first
column whose name contains "investor" and `portfolio_name` the first containing "portfolio". Without
a header, 3 columns are isin, market_value, currency and 5 are investor_name, portfolio_name, isin,
market_value, currency. A file needs exactly 3 columns or at least 5.

Better than R: two columns matching one required field are an error (R crashes or loses the
column); of several columns containing "investor" or "portfolio", one named exactly so (`Portfolio
Name`, `portfolio`) wins over one merely containing the word (`Portfolio Manager`), else the first
(R drops the grouping column).
"""

from __future__ import annotations

import re

from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule
from runner.tasks.portfolio_parser.readr_types import guess_type, is_header
from runner.text import quoted

ISIN = "isin"
MARKET_VALUE = "market_value"
CURRENCY = "currency"
PORTFOLIO_NAME = "portfolio_name"
INVESTOR_NAME = "investor_name"
REQUIRED = (ISIN, MARKET_VALUE, CURRENCY)
# PACTA groups by these, in this order, when the file has them.
GROUP_COLUMNS = (PORTFOLIO_NAME, INVESTOR_NAME)
HEADERLESS = {
    3: (ISIN, MARKET_VALUE, CURRENCY),
    5: (INVESTOR_NAME, PORTFOLIO_NAME, ISIN, MARKET_VALUE, CURRENCY),
}
# TRE's [[:space:]] is trimmed away before matching; ASCII case folding as in the C locale.
_REQUIRED_PATTERNS = {
    ISIN: re.compile(r"isin", re.IGNORECASE | re.ASCII),
    MARKET_VALUE: re.compile(r"market[._ ]?value", re.IGNORECASE | re.ASCII),
    CURRENCY: re.compile(r"currency", re.IGNORECASE | re.ASCII),
}
_GROUP_WORDS = {INVESTOR_NAME: "investor", PORTFOLIO_NAME: "portfolio"}
# A refusal lists at most this many of the header's names, each cut to NAME_CHARS.
LISTED_NAMES = 10
NAME_CHARS = 30
_EXACT_GROUP_NAME = {
    column: re.compile(rf"{word}(?:[._ ]?name)?", re.IGNORECASE | re.ASCII) for column, word in _GROUP_WORDS.items()
}


class ColumnMap:
    """Where each field is, whether line 1 is a header, and PACTA's `group_cols`."""

    __slots__ = ("has_header", "index", "width")

    def __init__(self, has_header: bool, width: int, index: dict[str, int]) -> None:
        self.has_header, self.width, self.index = has_header, width, index

    @property
    def group_cols(self) -> list[str]:
        return [column for column in GROUP_COLUMNS if column in self.index]


def map_columns(cells: list[str]) -> ColumnMap:
    """The columns of a file whose first record (trimmed) is `cells`; PortfolioFileError if refused."""
    if not is_header(cells):
        return _headerless(cells)
    names = _listed(cells)
    if len(cells) == 4 or len(cells) < 3:
        raise PortfolioFileError(
            Rule.COLUMN_COUNT,
            f"the file has {len(cells)} column(s) ({names}); a portfolio file has exactly 3 columns "
            "(isin, market_value, currency) or at least 5 (adding investor_name and portfolio_name)",
        )
    index = {column: _required_column(column, cells, names) for column in REQUIRED}
    if len(cells) > 3:
        index |= _group_columns(cells, taken=set(index.values()))
    return ColumnMap(True, len(cells), index)


def _listed(cells: list[str]) -> str:
    """The header's names for a message: the first LISTED_NAMES, each cut to NAME_CHARS."""
    names = ", ".join(quoted(cell, NAME_CHARS) for cell in cells[:LISTED_NAMES])
    more = len(cells) - LISTED_NAMES
    return f"{names} and {more:,} more" if more > 0 else names


def _headerless(cells: list[str]) -> ColumnMap:
    if len(cells) not in HEADERLESS:
        numeric = next((cell for cell in cells if guess_type(cell) not in ("character", "logical")), "")
        raise PortfolioFileError(
            Rule.COLUMN_COUNT,
            f"the file has {len(cells)} column(s) and no header row (line 1 has {quoted(numeric, NAME_CHARS)}, "
            "which reads as a number or date); without a header a portfolio file has 3 columns (isin, market_value, "
            "currency) or 5 (investor_name, portfolio_name, isin, market_value, currency)",
        )
    columns = HEADERLESS[len(cells)]
    return ColumnMap(False, len(cells), {column: position for position, column in enumerate(columns)})


def _required_column(column: str, cells: list[str], names: str) -> int:
    matches = [position for position, cell in enumerate(cells) if _REQUIRED_PATTERNS[column].fullmatch(cell)]
    if not matches:
        raise PortfolioFileError(
            Rule.MISSING_COLUMNS,
            f"the header row has no {column} column (it has {names}); line 1 must name the columns "
            "isin, market_value and currency (any case; market value may be written "
            "market.value, market_value, market value or marketvalue)",
        )
    if len(matches) > 1:
        both = " and ".join(f"{position + 1} ({quoted(cells[position], NAME_CHARS)})" for position in matches)
        raise PortfolioFileError(
            Rule.DUPLICATE_COLUMNS, f"columns {both} both name the {column} column; keep only one of them"
        )
    return matches[0]


def _group_columns(cells: list[str], taken: set[int]) -> dict[str, int]:
    """portfolio_name first: R names a column containing both words portfolio_name."""
    found: dict[str, int] = {}
    for column in (PORTFOLIO_NAME, INVESTOR_NAME):
        word, exact = _GROUP_WORDS[column], _EXACT_GROUP_NAME[column]
        candidates = [
            position
            for position, cell in enumerate(cells)
            if word in cell.lower() and position not in taken and position not in found.values()
        ]
        named = [position for position in candidates if exact.fullmatch(cells[position])]
        if named or candidates:
            found[column] = (named or candidates)[0]
    return found
