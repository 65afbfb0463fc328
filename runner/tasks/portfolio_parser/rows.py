"""An output's lines as R's `write.csv` writes isin, market_value, currency: `"US0378331005",1234.5,"USD"`.

The usual rows (no isin or currency missing or holding a quote) are made from the three columns and
the constant parts between them in one join; export.py writes the other rows value by value. Rows
made when read (reader.py) are kept as these bytes, and their isins and currencies can be had back
from them.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.tasks.portfolio_parser.column import SEPARATOR


def as_is_rows(isins: Sequence[str], fields: Sequence[str], currencies: Sequence[str]) -> bytes:
    """The lines of rows whose isins and currencies are written as they are between quotes, with
    the market values' output fields."""
    parts = ['"', "", '",', "", ',"', "", '"\n'] * len(isins)
    parts[1::7] = isins
    parts[3::7] = fields
    parts[5::7] = currencies
    return "".join(parts).encode("utf-8")


def framed_rows(isins: Sequence[str], framed: Sequence[str], currencies: Sequence[str]) -> bytes:
    """`as_is_rows`, the output fields each already framed by what stands around it (`",1234.5,"`,
    market_values.render_money): fewer parts to join."""
    parts = ['"\n"'] * (4 * len(isins) + 1)
    parts[0] = '"'
    parts[1::4] = isins
    parts[2::4] = framed
    parts[3::4] = currencies
    parts[-1] = '"\n'
    return "".join(parts).encode("utf-8")


def columns_of(rows: bytes) -> tuple[str, str]:
    """The isins and currencies of `as_is_rows` lines, each column joined by SEPARATOR: between the
    quotes, which none of them holds."""
    parts = rows.decode("utf-8").split('"')  # '', isin, ',value,', currency, '\n', isin, ...
    return SEPARATOR.join(parts[1::4]), SEPARATOR.join(parts[3::4])
