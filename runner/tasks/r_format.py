"""CSV bytes exactly as R's `write.csv(row.names=FALSE, na="", fileEncoding="UTF-8")` writes them.

PACTA's consumers hash these files (`output_md5`), so the bytes matter: strings double-quoted with
inner quotes doubled, NA as an empty field, LF line endings, and numbers formatted the way R's
`formatReal` does with the 15 significant digits `write.table` uses: fixed notation unless the
scientific form is narrower (`10000` -> `10000`, `100000` -> `1e+05`, `1234.5` -> `1234.5`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# write.table formats reals with the internal equivalent of digits = 15 (DBL_DIG).
R_DIGITS = 15
# The largest power of ten in R's formatReal table; beyond it R never reports a widening rounding.
R_KP_MAX = 22

Cell = str | float | None


def format_r_number(value: float) -> str:
    """Format one number as R's write.csv does (15 significant digits, fixed or scientific)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"  # R prints negative zero as 0 too
    negative = 1 if value < 0 else 0
    # R's scientific(): the value rounded to 15 significant digits, its exponent, and how many of
    # those digits are significant once trailing zeros go.
    mantissa, exponent = f"{abs(value):.{R_DIGITS - 1}e}".split("e")
    kpower = int(exponent)
    significant = mantissa.replace(".", "").rstrip("0")
    nsig = max(len(significant), 1)
    # When rounding to 15 digits carried into a new power of ten (9.99..96 -> 1e+01) but fixed
    # notation would not round up, R counts one digit fewer left of the point.
    rgt_bound = min(max(R_DIGITS - kpower, 0), R_KP_MAX)
    rounding_widens = 0 < kpower <= R_KP_MAX and abs(value) < 10.0**kpower - 0.5 / 10.0**rgt_bound
    left = kpower + 1 - (1 if rounding_widens else 0)
    # Fixed width: sign, digits left of the point (at least the leading 0), point, digits right.
    sleft = negative + (left if left > 0 else 1)
    rgt = max(nsig - left, 0)
    fixed_width = sleft + rgt + (1 if rgt else 0)
    # Scientific width: sign, mantissa (a point only with decimals), `e`, sign, 2 or 3 digits.
    decimals = nsig - 1
    exponent_digits = 2 if (left > 100 or left <= -99) else 1
    scientific_width = negative + (1 if decimals > 0 else 0) + decimals + 4 + exponent_digits
    if fixed_width <= scientific_width:  # R_print.scipen is 0: ties go to fixed notation
        return f"{value:.{rgt}f}"
    return f"{value:.{decimals}e}"


def format_r_csv_field(value: Cell) -> str:
    """One field: NA empty, strings quoted with `"` doubled, numbers bare."""
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    return format_r_number(value)


def render_r_csv(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> bytes:
    """The whole file, header included, as UTF-8 bytes with LF line endings."""
    lines = [",".join(format_r_csv_field(name) for name in columns)]
    lines.extend(",".join(format_r_csv_field(cell) for cell in row) for row in rows)
    return ("\n".join(lines) + "\n").encode("utf-8")
