"""Numbers and strings exactly as R's `write.csv(row.names=FALSE, na="")` writes them.

PACTA's consumers hash the output files (`output_md5`), so the bytes matter. `write.table` sets
`R_print.digits` to 15 and formats each number on its own with `formatReal` (src/main/format.c):
`scientific()` finds the significant digits and the power of ten, then fixed notation is used unless
scientific is narrower (`10000` -> `10000`, `100000` -> `1e+05`, `0.0001` -> `1e-04`), and the digits
come from `sprintf("%.*f")` or `sprintf("%.*e")`, which Python's formatting reproduces exactly.

`scientific()` scales the number to 15 digits in x87 long double. When the shortest representation
of a (normal) double has at most 15 significant digits that scaling cannot change them, so they are
read off `repr`; otherwise (16 or 17 digits, or a subnormal) the long double arithmetic is replayed
exactly.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fractions import Fraction

R_DIGITS = 15  # write.table's R_print.digits (DBL_DIG)
KP_MAX = 27  # format.c's long double power table reaches 1e27
LONG_DOUBLE_BITS = 64  # x87 extended precision significand
TEN_TO_14 = 10**14


def format_r_double(value: float) -> str:
    """One number as `write.csv` writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"  # R prints negative zero as 0 too
    digits, kpower = _shortest_digits(repr(value))
    if len(digits) <= R_DIGITS and abs(value) >= sys.float_info.min:  # subnormals have fewer bits
        nsig, widens = len(digits), False
    else:
        kpower, nsig, widens = _scientific_long_double(abs(value))
    return _layout(value, kpower, nsig, widens)


def quote_r_string(value: str | None) -> str:
    """A string field: double-quoted with inner quotes doubled (qmethod "double"); NA is empty."""
    if value is None:
        return ""
    return '"' + value.replace('"', '""') + '"'


def _layout(value: float, kpower: int, nsig: int, widens: bool) -> str:
    """formatReal's choice for one number, then EncodeReal0's sprintf."""
    negative = 1 if value < 0 else 0
    left = kpower + 1 - (1 if widens else 0)
    right = max(nsig - left, 0)
    fixed_width = negative + (left if left > 0 else 1) + right + (1 if right else 0)
    exponent_digits = 2 if (left > 100 or left <= -99) else 1
    decimals = nsig - 1
    scientific_width = negative + (1 if decimals > 0 else 0) + decimals + 4 + exponent_digits
    if fixed_width <= scientific_width:  # R_print.scipen is 0: a tie goes to fixed notation
        return f"{value:.{right}f}"
    return f"{value:.{decimals}e}"


def _shortest_digits(text: str) -> tuple[str, int]:
    """Significant digits of a `repr` and the power of ten of the first one: "1234.5" -> ("12345", 3)."""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    significant = digits.lstrip("0")
    kpower = len(whole) - 1 - (len(digits) - len(significant)) + (int(exponent) if exponent else 0)
    return significant.rstrip("0"), kpower


def _scientific_long_double(r: float) -> tuple[int, int, bool]:
    """format.c `scientific()` for digits = 15, replaying its long double arithmetic exactly."""
    from fractions import Fraction  # here: most numbers never need it, and it imports decimal

    kp = math.floor(math.log10(r)) - R_DIGITS + 1
    exact = Fraction(r)
    if 0 < kp <= KP_MAX:
        scaled = _long_double(exact / 10**kp)
    elif -KP_MAX <= kp < 0:
        scaled = _long_double(exact * 10**-kp)
    elif kp == 0:
        scaled = exact
    else:  # powl(10, kp): taken as correctly rounded, which glibc's powl is to within an ulp
        scaled = _long_double(exact / _long_double(Fraction(10) ** kp))
    if scaled < TEN_TO_14:
        scaled = _long_double(scaled * 10)
        kp -= 1
    alpha = round(scaled)  # nearbyintl: ties to even, as Fraction's round does
    nsig = R_DIGITS
    while nsig > 0 and alpha % 10 == 0:
        alpha //= 10
        nsig -= 1
    if nsig == 0:  # rounding carried into a new power of ten (9.99...95 -> 10)
        nsig, kp = 1, kp + 1
    kpower = kp + R_DIGITS - 1
    # Fixed notation rounds less than scientific: 99999.99999999999 stays 5 digits wide in fixed.
    rgt = min(max(R_DIGITS - kpower, 0), KP_MAX)
    fuzz = 0.5 / float(10**rgt)
    widens = 0 < kpower <= KP_MAX and exact < _long_double(10**kpower - Fraction(fuzz))
    return kpower, nsig, widens


def _long_double(value: Fraction) -> Fraction:
    """`value` rounded to a 64-bit significand, ties to even, as the x87 FPU rounds."""
    from fractions import Fraction

    if value <= 0:
        return value  # only positive numbers are scaled here
    numerator, denominator = value.numerator, value.denominator
    exponent = numerator.bit_length() - denominator.bit_length()
    if Fraction(2) ** exponent > value:
        exponent -= 1
    shift = LONG_DOUBLE_BITS - 1 - exponent  # 2**63 <= value * 2**shift < 2**64
    scaled = value * Fraction(2) ** shift
    significand, remainder = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and significand % 2):
        significand += 1
    return Fraction(significand) / Fraction(2) ** shift
