"""Row warnings PACTA never gives (its issues #185, #187): they change no output, they explain it.

ISINs are checked as PACTA's unused `is_valid_isin` would (upper-cased, blanks removed, two letters,
nine letters or digits, a Luhn check digit over the letters as 10..35) and currencies against ISO
4217. Missing values are not warned about: PACTA passes them through as NA. At most
`MAX_LISTED_PER_RULE` warnings per rule are listed, the lowest lines first; `counts` has them all.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence

from runner.tasks.portfolio_parser.column import SEPARATOR, has_space
from runner.tasks.portfolio_parser.currencies import ISO_4217_CODES
from runner.tasks.portfolio_parser.groups import GroupStore
from runner.text import quoted, shorten

MAX_LISTED_PER_RULE = 100
# A message quotes at most 100 characters of the value it is about (runner.text.quoted); any
# message is cut past this many.
MAX_MESSAGE_CHARS = 500
# Distinct ISINs remembered as checked; past this the memory is dropped (bounded memory).
MAX_REMEMBERED = 200_000
INVALID_ISIN = "invalid_isin"
UNKNOWN_CURRENCY = "unknown_currency"
UNPARSEABLE_MARKET_VALUE = "unparseable_market_value"
NEGATIVE_MARKET_VALUE = "negative_market_value"
DECIMAL_MARK = "decimal_mark"
FORMULA_LIKE = "formula_like"
# What a spreadsheet takes for the start of a formula in a CSV cell (OWASP's list for CSV injection;
# the tab and carriage return it also names are trimmed off every field here).
FORMULA_STARTS = ("=", "+", "-", "@")

_ISIN_SHAPE = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")
_ISIN_SHAPES = re.compile(f"(?:[A-Z]{{2}}[A-Z0-9]{{9}}[0-9]{SEPARATOR})*")
_LETTERS_AS_NUMBERS = str.maketrans({chr(ord("A") + offset): str(10 + offset) for offset in range(26)})
_DIGIT_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
# A doubled digit's digit sum: 2*5 = 10 -> 1, 2*9 = 18 -> 9.
_DOUBLED_DIGIT_VALUE = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))
# A Luhn sum (at most 22 digits of at most 9: below 256) to the check digit that completes it.
_CHECK_DIGIT = bytes(ord("0") + (-total % 10) for total in range(256))


def isin_problem(value: str) -> str | None:
    """What is wrong with `value` as an ISIN, in words; None when it is a valid ISIN."""
    return isin_problems([value]).get(value)


def isin_problems(values: Iterable[str]) -> dict[str, str]:
    """The invalid ones among distinct non-empty `values`, each with what is wrong with it."""
    originals = list(values)
    normalized = SEPARATOR.join(originals).upper()
    if " " in normalized or "\t" in normalized:  # R removes blanks anywhere before checking
        normalized = normalized.replace(" ", "").replace("\t", "")
    isins = normalized.split(SEPARATOR)
    if _ISIN_SHAPES.fullmatch(normalized + SEPARATOR):  # the usual case: all shaped like ISINs
        shaped = list(range(len(isins)))
    else:
        shaped = [index for index, isin in enumerate(isins) if _ISIN_SHAPE.fullmatch(isin)]
    problems = dict.fromkeys(originals, "is not an ISIN (two letters, nine letters or digits, then a check digit)")
    shaped_isins = [isins[index] for index in shaped]
    expected = luhn_check_digits([isin[:-1] for isin in shaped_isins])
    actual = "".join(isin[-1] for isin in shaped_isins).encode()
    for index in shaped:
        problems.pop(originals[index])
    if expected != actual:
        for index, want, have in zip(shaped, expected, actual, strict=True):
            if want != have:
                problems[originals[index]] = (
                    f"has check digit {chr(have)}, but its first 11 characters give {chr(want)}"
                )
    return problems


def luhn_check_digits(payloads: list[str]) -> bytes:
    """The ISIN check digit (ASCII) of each payload of 11 letters or digits, all at once.

    Letters become numbers (A=10 .. Z=35) in one translate; the Luhn sum of each is then taken from
    the right, every other digit doubled (as its digit sum), starting with the rightmost. Payloads
    of one length are reversed together into one byte string, and a multiplication of big
    integers adds up each payload's digits in one byte lane (sums stay below 256, so no carry)."""
    expanded = SEPARATOR.join(payloads).translate(_LETTERS_AS_NUMBERS).split(SEPARATOR) if payloads else []
    lengths = list(map(len, expanded))
    order = sorted(range(len(expanded)), key=lengths.__getitem__)
    ordered_lengths = [lengths[index] for index in order]
    digits = bytearray(len(expanded))
    for length in set(lengths):
        indices = order[bisect_left(ordered_lengths, length) : bisect_right(ordered_lengths, length)]
        width = length + (length & 1)  # even, so every payload's first digit falls on an even byte
        block = "".join("0" * (width - length) + expanded[index] for index in indices).encode()[::-1]
        values = bytearray(block.translate(_DIGIT_VALUE))
        values[0::2] = block[0::2].translate(_DOUBLED_DIGIT_VALUE)
        lanes = int.from_bytes(values, "little") * int.from_bytes(b"\x01" * width, "little")
        sums = lanes.to_bytes(len(values) + width, "little")[width - 1 :: width][: len(indices)]
        for index, digit in zip(indices, sums.translate(_CHECK_DIGIT)[::-1], strict=True):
            digits[index] = digit
    return bytes(digits)


class WarningLog:
    """Per-row warnings of one file."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._kept: dict[str, list[tuple[int, int, dict[str, object]]]] = {}
        self._found = 0  # warnings kept so far, to list equal lines in the order found

    def add(self, line: int, column: str, rule: str, message: str) -> None:
        self.counts[rule] += 1
        self._keep(rule, {"line": line, "column": column, "rule": rule, "message": shorten(message, MAX_MESSAGE_CHARS)})

    def merge(self, other: WarningLog) -> None:
        """Take in the warnings another process found (in another part of the file)."""
        self.counts.update(other.counts)
        for rule, kept in other._kept.items():
            for _, _, warning in sorted(kept, key=lambda item: item[1]):
                self._keep(rule, warning)

    def _keep(self, rule: str, warning: dict[str, object]) -> None:
        kept = self._kept.setdefault(rule, [])
        line = int(warning["line"])  # type: ignore[call-overload]
        self._found += 1
        item = (-line, self._found, warning)
        if len(kept) < MAX_LISTED_PER_RULE:
            heapq.heappush(kept, item)
        elif line < -kept[0][0]:  # a lower line than the highest kept one
            heapq.heapreplace(kept, item)

    def listed(self) -> list[dict[str, object]]:
        """The kept warnings by line, then by rule (whichever process found them, and when)."""
        items = [item for kept in self._kept.values() for item in kept]
        return [warning for _, _, warning in sorted(items, key=lambda item: (-item[0], item[2]["rule"], item[1]))]


class RowChecks:
    """Checks ISINs and currencies block by block, remembering the values already checked."""

    def __init__(self, log: WarningLog) -> None:
        self._log = log
        self._valid_isins: set[str] = set()
        self._isin_problems: dict[str, str] = {}
        self._valid_currencies: set[str] = set()  # as written, ISO 4217 codes (any case)
        # What `as_written` found new in a block, for `check` of the same block.
        self._new: tuple[Sequence[str], set[str], set[str]] | None = None

    def as_written(self, isins: Sequence[str], currencies: Sequence[str]) -> bool:
        """Whether one block's values, as read (not trimmed), are clean: none missing (empty or
        `NA`), none with whitespace around it or a quote in it. Values already found valid are;
        the others (few, once a file's ISINs and currencies have been seen) are looked at one by
        one. No warning is given here; `check` of the same values reuses what was found."""
        new_isins = _unseen(isins, self._valid_isins)
        new_currencies = _unseen(currencies, self._valid_currencies)
        if not (_all_clean(new_isins) and _all_clean(new_currencies)):
            return False
        self._new = (isins, new_isins, new_currencies)
        return True

    def check(self, lines: Sequence[int], isins: Sequence[str], currencies: Sequence[str]) -> None:
        """One block's rows; a missing value is the empty string."""
        new, self._new = self._new, None
        if new is not None and new[0] is isins:  # as_written has just looked at them
            _, new_isins, new_currencies = new
        else:
            new_isins, new_currencies = _unseen(isins, self._valid_isins), _unseen(currencies, self._valid_currencies)
        if new_isins:
            self._check_isins(lines, isins, new_isins)
        if new_currencies:
            self._check_currencies(lines, currencies, new_currencies)

    def _check_isins(self, lines: Sequence[int], isins: Sequence[str], unchecked: set[str]) -> None:
        unchecked.discard("")
        if not unchecked:
            return
        problems = {isin: self._isin_problems[isin] for isin in unchecked & self._isin_problems.keys()}
        fresh = isin_problems(unchecked - problems.keys())
        if len(self._isin_problems) < MAX_REMEMBERED:
            self._isin_problems.update(fresh)
        problems |= fresh
        if len(self._valid_isins) > MAX_REMEMBERED:
            self._valid_isins.clear()
        self._valid_isins |= unchecked - problems.keys()
        if problems:
            for line, isin in zip(lines, isins, strict=True):
                if isin in problems:
                    self._log.add(line, "isin", INVALID_ISIN, f"ISIN {quoted(isin)} {problems[isin]}")

    def _check_currencies(self, lines: Sequence[int], currencies: Sequence[str], unchecked: set[str]) -> None:
        unknown = {code for code in unchecked - ISO_4217_CODES if code and code.upper() not in ISO_4217_CODES}
        if len(self._valid_currencies) > MAX_REMEMBERED:
            self._valid_currencies.clear()
        self._valid_currencies |= unchecked - unknown - {""}
        if unknown:
            for line, code in zip(lines, currencies, strict=True):
                if code in unknown:
                    message = f"currency {quoted(code)} is not an ISO 4217 code"
                    self._log.add(line, "currency", UNKNOWN_CURRENCY, message)


def _unseen(values: Sequence[str], seen: set[str]) -> set[str]:
    """The distinct values not in `seen` (usually none: told without making a set of them)."""
    return set() if seen.issuperset(values) else set(values) - seen


def _all_clean(values: set[str]) -> bool:
    """Each value present, not `NA`, with nothing to trim, and written between quotes as it is (no
    quote in it). Told on the values joined, unless some whitespace is among them."""
    if not values:
        return True
    joined = SEPARATOR.join(values)
    if "" in values or "NA" in values or '"' in joined:
        return False
    return not has_space(joined) or all(value == value.strip() for value in values)


def check_group_names(store: GroupStore, group_cols: list[str], log: WarningLog) -> None:
    """A warning for each name a spreadsheet would take for a formula (`=HYPERLINK(...)`, `+1`,
    `@SUM(...)`), once per name, at the first line it is on. The name is kept as it is: the outputs
    are the file's data, as PACTA's are, and the manifest is JSON; only the warning says so."""
    first_lines: dict[tuple[str, str], int] = {}
    for key in store.ordered_keys():
        for column, name in zip(group_cols, key, strict=True):
            if name is not None and name.startswith(FORMULA_STARTS):
                line = store.first_line(key)
                first_lines[column, name] = min(line, first_lines.get((column, name), line))
    for (column, name), line in first_lines.items():
        message = (
            f"{column} {quoted(name)} starts with {name[0]!r}, so a spreadsheet opening a CSV that holds it "
            "may run it as a formula; it is kept as it is (PACTA keeps it too): rename the sub-portfolio if "
            "that is not meant"
        )
        log.add(line, column, FORMULA_LIKE, message)
