"""Writes each sub-portfolio as PACTA's `export_portfolio` does: `<uuid4>.csv` holding isin,
market_value, currency as `write.csv(row.names=FALSE, na="", fileEncoding="UTF-8")` writes them,
and returns its manifest entry (`output_md5`, `output_filename`, `output_rows`, the group's names).

Files are written piece by piece, so a group never has to fit in memory. With many rows (and a core
to spare), a forked process renders the second half of the pieces (in group order) while this one
renders the first half into the outputs: when a group ends near the middle, it writes the later
groups' output files whole, which this one renames into place; else it renders its pieces into a
scratch file, whose bytes are then copied after this one's.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, NamedTuple

from runner.tasks.portfolio_parser.checks import (
    DECIMAL_MARK,
    NEGATIVE_MARKET_VALUE,
    UNPARSEABLE_MARKET_VALUE,
    WarningLog,
)
from runner.tasks.portfolio_parser.column import SEPARATOR
from runner.tasks.portfolio_parser.groups import GroupKey, GroupPiece, GroupStore
from runner.tasks.portfolio_parser.market_values import RenderedValues, decimal_conflicts, render_values
from runner.tasks.portfolio_parser.marks import Marks
from runner.tasks.portfolio_parser.parallel import fork_call, spare_core
from runner.tasks.portfolio_parser.rows import as_is_rows, columns_of
from runner.text import quoted

HEADER = b'"isin","market_value","currency"\n'
# Below this many rows a second process costs about what it saves.
SPLIT_MIN_ROWS = 50_000
# A group boundary this close to the middle (a share of all rows) is where the work is split: the
# second process then writes whole output files, which this one only renames, rather than bytes it
# copies (and hashes) after its own. Further off, the uneven halves would cost more than the copy.
GROUP_SPLIT_SLACK = 0.05

Unit = tuple[GroupKey, int, int]  # a piece: its group, its index in the group, its rows


class _Rendered(NamedTuple):
    """What the forked process rendered: pieces, each one's bytes at a place in `path`; or whole
    groups, each an output file of its own in the work directory (`files`)."""

    path: str
    places: list[tuple[GroupKey, int, int]]  # group, offset, length
    log: WarningLog
    files: list[tuple[GroupKey, str, str]]  # group, path, MD5


class _Output:
    """One output file being written; `entry` is its manifest entry, completed when closed."""

    __slots__ = ("digest", "entry", "file", "key")

    def __init__(self, key: GroupKey, file: IO[bytes], digest: Any, entry: dict[str, Any]) -> None:
        self.key, self.file, self.digest, self.entry = key, file, digest, entry

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.digest.update(data)


def export_groups(
    store: GroupStore, marks: Marks, group_cols: list[str], output_dir: Path, log: WarningLog, work_dir: Path
) -> list[dict[str, Any]]:
    """One CSV per group, in dplyr's group order; their manifest entries. On an error no CSV of
    this file is left behind: the manifest will not list them. At most two files are open at once."""
    plan = store.plan()
    split = _split_index(plan)
    whole_groups = 0 < split < len(plan) and plan[split][0] != plan[split - 1][0]
    render = _render_groups if whole_groups else _render_units
    later = fork_call(render, store, marks, plan[split:], work_dir) if split < len(plan) else None
    continued = plan[split][0] if later is not None and not whole_groups else None  # rendered by both
    written: dict[GroupKey, dict[str, Any]] = {}
    open_outputs: list[_Output] = []
    try:
        for key, units in groupby(plan[:split], key=itemgetter(0)):
            output = _open_output(key, store.count(key), group_cols, output_dir, written, open_outputs)
            for _, index, _ in units:
                output.write(_render_piece(store.piece(key, index), marks, log))
            if key != continued:
                _close(output, open_outputs)
        if later is not None:
            rendered = later.result()
            log.merge(rendered.log)
            for key, path, md5 in rendered.files:
                entry = _new_entry(key, store.count(key), group_cols, written)
                entry["output_md5"] = md5
                os.replace(path, output_dir / entry["output_filename"])
            if rendered.path:
                with open(rendered.path, "rb") as scratch:
                    for key, places in groupby(rendered.places, key=itemgetter(0)):
                        output = next((output for output in open_outputs if output.key == key), None) or _open_output(
                            key, store.count(key), group_cols, output_dir, written, open_outputs
                        )
                        for _, offset, length in places:
                            output.write(os.pread(scratch.fileno(), length, offset))
                        _close(output, open_outputs)
        return [written[key] for key in store.ordered_keys()]
    except BaseException:
        for output in open_outputs:
            output.file.close()
        for entry in written.values():
            (output_dir / entry["output_filename"]).unlink(missing_ok=True)
        raise
    finally:
        if later is not None:
            later.cancel()


def _split_index(plan: list[Unit]) -> int:
    """Where the second process's share of the pieces begins: about half the rows, at the group
    boundary nearest the middle if one is within GROUP_SPLIT_SLACK (none of them when no core is
    spare: parallel.spare_core)."""
    total = sum(rows for _, _, rows in plan)
    if total < SPLIT_MIN_ROWS or len(plan) < 2 or not spare_core():
        return len(plan)
    done, middle, boundary, off = 0, len(plan), 0, float(total)
    for position, (key, _, rows) in enumerate(plan):
        if position and key != plan[position - 1][0] and abs(done - total / 2) < off:
            boundary, off = position, abs(done - total / 2)
        if done >= total / 2 and middle == len(plan):
            middle = position
        done += rows
    return boundary if boundary and off <= GROUP_SPLIT_SLACK * total else middle


def _render_groups(store: GroupStore, marks: Marks, units: list[Unit], work_dir: Path) -> _Rendered:
    """In the forked process: write each group of `units` (whole groups) as the output file it
    will be, in `work_dir`, with its MD5."""
    log = WarningLog()
    files: list[tuple[GroupKey, str, str]] = []
    for key, group_units in groupby(units, key=itemgetter(0)):
        digest = hashlib.md5(usedforsecurity=False)
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix="group-", suffix=".csv", delete=False) as output:
            rendered = (_render_piece(store.piece(key, index), marks, log) for _, index, _ in group_units)
            for data in chain([HEADER], rendered):
                output.write(data)
                digest.update(data)
        files.append((key, output.name, digest.hexdigest()))
    return _Rendered("", [], log, files)


def _render_units(store: GroupStore, marks: Marks, units: list[Unit], work_dir: Path) -> _Rendered:
    """In the forked process: render `units` one after the other into a scratch file."""
    log = WarningLog()
    places: list[tuple[GroupKey, int, int]] = []
    with tempfile.NamedTemporaryFile(dir=work_dir, prefix="rendered-", suffix=".csv", delete=False) as scratch:
        for key, index, _ in units:
            data = _render_piece(store.piece(key, index), marks, log)
            places.append((key, scratch.tell(), len(data)))
            scratch.write(data)
    return _Rendered(scratch.name, places, log, [])


def _open_output(
    key: GroupKey,
    rows: int,
    group_cols: list[str],
    output_dir: Path,
    written: dict[GroupKey, dict[str, Any]],
    open_outputs: list[_Output],
) -> _Output:
    """Start `<uuid4>.csv` for a group; its entry goes into `written` at once (for clean-up)."""
    entry = _new_entry(key, rows, group_cols, written)
    file = (output_dir / entry["output_filename"]).open("wb")
    output = _Output(key, file, hashlib.md5(usedforsecurity=False), entry)
    open_outputs.append(output)
    output.write(HEADER)
    return output


def _new_entry(
    key: GroupKey, rows: int, group_cols: list[str], written: dict[GroupKey, dict[str, Any]]
) -> dict[str, Any]:
    """A group's manifest entry, named `<uuid4>.csv`, put into `written` at once (for clean-up)."""
    # export_portfolio's key order: output_md5 (set when written), output_filename, output_rows, the
    # names. R writes a missing name as [null], which PACTA's Go decoder rejects; null reads as "".
    entry: dict[str, Any] = {"output_md5": "", "output_filename": f"{_uuid4()}.csv", "output_rows": rows}
    entry.update(zip(group_cols, key, strict=True))
    written[key] = entry
    return entry


def _uuid4() -> str:
    """A random UUID as `str(uuid.uuid4())` gives it (version 4, RFC 4122 variant), without importing
    uuid, which imports platform: 2 ms of every parse's start-up."""
    value = bytearray(os.urandom(16))
    value[6] = value[6] & 0x0F | 0x40
    value[8] = value[8] & 0x3F | 0x80
    digits = value.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _close(output: _Output, open_outputs: list[_Output]) -> None:
    output.file.close()
    output.entry["output_md5"] = output.digest.hexdigest()
    open_outputs.remove(output)


def _render_piece(piece: GroupPiece, marks: Marks, log: WarningLog) -> bytes:
    """The rows' CSV lines. Each column is made into its part of a line (`"isin",`, the value,
    `,"currency"` and the line end) on the joined column; then the parts are interleaved. When no
    isin or currency is missing or holds a quote (the usual piece), the quotes and commas go
    between the values as parts of their own instead: no string is made for each one. A piece
    rendered when read (for a decimal point) is that, unless the column's decimal mark is `,`."""
    if piece.rendered is not None:
        if marks.decimal == ".":
            return piece.rendered  # money values: nothing to warn about (reader._read_money_block)
        isins, currencies = columns_of(piece.rendered)
        piece = GroupPiece(piece.lines, isins, piece.values, currencies, piece.count)
    values = render_values(piece.values, marks)
    _log_market_values(piece, values, marks, log)
    if _as_is(piece.isins) and _as_is(piece.currencies):
        return as_is_rows(piece.isins.split(SEPARATOR), values.fields, piece.currencies.split(SEPARATOR))
    parts = [""] * (3 * piece.count)
    parts[0::3] = _decorated(piece.isins, '"', '",')
    parts[1::3] = values.fields
    parts[2::3] = _decorated(piece.currencies, ',"', '"\n')
    return "".join(parts).encode("utf-8")


def _as_is(joined: str) -> bool:
    """Whether every value of a joined column is written as it is between quotes: none missing
    (empty), none holding a quote (to be doubled)."""
    return (
        bool(joined)
        and '"' not in joined
        and SEPARATOR * 2 not in joined
        and not joined.startswith(SEPARATOR)
        and not joined.endswith(SEPARATOR)
    )


def _decorated(joined: str, before: str, after: str) -> list[str]:
    """Each value quoted as R quotes it (NA empty, `"` doubled), between `before` and `after`,
    which hold the opening and closing quote."""
    padded = SEPARATOR + joined + SEPARATOR
    if '"' not in joined and SEPARATOR * 2 not in padded:  # no quote to double, no missing value
        return (before + joined.replace(SEPARATOR, after + SEPARATOR + before) + after).split(SEPARATOR)
    bare_before, bare_after = before.replace('"', ""), after.replace('"', "")
    return [
        before + text.replace('"', '""') + after if text else bare_before + bare_after
        for text in joined.split(SEPARATOR)
    ]


def _log_market_values(piece: GroupPiece, values: RenderedValues, marks: Marks, log: WarningLog) -> None:
    conflicts = decimal_conflicts(piece.values, marks)
    if not (values.unparseable or values.negative or conflicts):
        return
    texts = piece.values.split(SEPARATOR)
    for row in values.unparseable:
        message = f"market value {quoted(texts[row])} holds no number; it is written as missing, as PACTA does"
        log.add(piece.lines[row], "market_value", UNPARSEABLE_MARKET_VALUE, message)
    for row in values.negative:
        message = f"market value {quoted(texts[row])} is negative"
        log.add(piece.lines[row], "market_value", NEGATIVE_MARKET_VALUE, message)
    for row in conflicts:
        message = (
            f"market value {quoted(texts[row])} looks like it uses the other decimal mark, but the column is read "
            f"(as PACTA reads it) with decimal mark {marks.decimal!r} and grouping mark {marks.grouping!r}, "
            f"giving {values.fields[row] or 'a missing value'}"
        )
        log.add(piece.lines[row], "market_value", DECIMAL_MARK, message)
