"""Market values read as readr's `col_number()` reads them (vroom 1.6 `parseNumber`), plus
accounting parentheses.

readr skips everything before the first `-`, decimal mark or digit, then reads digits, skipping
grouping marks anywhere in the number, up to the first character that cannot continue it: `$1,234.5
USD` is 1234.5, `abc` is missing. The arithmetic is replayed as vroom does it in doubles (`sum * 10 +
digit`, then `digit / 10**k` added per decimal), since R writes the result with 15 significant
digits and a different rounding could show there.
"""

from __future__ import annotations

import math

# vroom divides by a running power of ten, multiplied by 10 in doubles at each decimal.
_POWERS_OF_TEN = [1.0]
for _ in range(400):
    _POWERS_OF_TEN.append(_POWERS_OF_TEN[-1] * 10.0)


def accounting_amount(text: str) -> str | None:
    """The amount inside accounting parentheses, `x` for `(x)` (trimmed), or None when `text`
    (trimmed) is not so written. The one place the parser's policy is decided: wherever it asks
    whether a market value is a number (reading it: parse_market_value; guessing whether line 1
    is a header: readr_types.guess_type), `(x)` is the number x is, negated."""
    if len(text) > 2 and text[0] == "(" and text[-1] == ")":
        return text[1:-1].strip()
    return None


def parse_market_value(text: str, decimal_mark: str, grouping_mark: str) -> float | None:
    """The number readr reads from `text` (already trimmed, not NA), or None where it reads NA.

    Unlike readr, `(1,000)` is read as -1000: the accounting notation for a negative amount
    (accounting_amount)."""
    amount = accounting_amount(text)
    if amount is not None:
        inner = parse_number(amount, decimal_mark, grouping_mark)
        return -inner if inner is not None and inner > 0 else inner
    return parse_number(text, decimal_mark, grouping_mark)


def parse_number(text: str, decimal_mark: str, grouping_mark: str) -> float | None:
    """vroom's `parseNumber` (src/vroom_num.cc), not strict: trailing text is ignored."""
    return scan_number(text, decimal_mark, grouping_mark)[0]


def scan_number(text: str, decimal_mark: str, grouping_mark: str) -> tuple[float | None, int, int]:
    """(number or None, where it starts, where reading stopped), as vroom's `parseNumber`."""
    end = len(text)
    start = _number_start(text, decimal_mark)
    total, denominator_index, exponent = 0.0, 0, 0.0
    sign, exponent_sign = 1.0, 1.0
    state, seen_digit, exponent_open = "init", False, True
    position = start
    while position < end:
        char = text[position]
        digit = ord(char) - 48 if "0" <= char <= "9" else -1
        if state == "init":
            if char == "-":
                state, sign = "left", -1.0
            elif text.startswith(decimal_mark, position):
                state = "right"
            elif digit >= 0:
                state, seen_digit, total = "left", True, float(digit)
            else:
                break
        elif state != "exponent":
            if text.startswith(grouping_mark, position):
                position += len(grouping_mark) - 1
            elif state == "left" and text.startswith(decimal_mark, position):
                state = "right"
            elif seen_digit and char in "eE":
                state = "exponent"
            elif digit >= 0:
                seen_digit = True
                if state == "left":
                    total = total * 10.0 + digit
                else:
                    denominator_index += 1
                    total += digit / _power_of_ten(denominator_index)
            else:
                break
        elif char == "-" and exponent_open:  # a sign only straight after the e
            exponent_sign, exponent_open = -1.0, False
        elif char == "+" and exponent_open:
            exponent_open = False
        elif digit >= 0:
            exponent, exponent_open = exponent * 10.0 + digit, False
        else:
            break
        position += 1
    if not seen_digit:
        return None, start, position
    result = sign * total
    if exponent:
        result *= _pow10(exponent_sign * exponent)
    return result, start, position


def _number_start(text: str, decimal_mark: str) -> int:
    """Index of the first `-`, decimal mark or digit (vroom's "advance to first non-character")."""
    for position, char in enumerate(text):
        if char == "-" or "0" <= char <= "9" or text.startswith(decimal_mark, position):
            return position
    return len(text)


def _power_of_ten(index: int) -> float:
    if index < len(_POWERS_OF_TEN):
        return _POWERS_OF_TEN[index]
    return math.inf  # 10.0 multiplied past 1e308 overflows in vroom too


def _pow10(exponent: float) -> float:
    """C's pow(10.0, exponent); Python raises where C returns infinity."""
    try:
        return math.pow(10.0, exponent)
    except OverflowError:
        return math.inf
