"""Writes each sub-portfolio as PACTA's `export_portfolio` does: `<uuid4>.csv` holding isin,
market_value, currency as `write.csv(row.names=FALSE, na="", fileEncoding="UTF-8")` writes them,
and returns its manifest entry (`output_md5`, `output_filename`, `output_rows`, the group's names).

Files are written piece by piece, so a group never has to fit in memory. With many rows, a forked
process renders the second half of the pieces (in group order) into a scratch file while this one
renders the first half into the outputs; its bytes are then copied after them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

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
from runner.tasks.portfolio_parser.parallel import fork_call
from runner.text import quoted

HEADER = b'"isin","market_value","currency"\n'
# Below this many rows a second process costs about what it saves.
SPLIT_MIN_ROWS = 50_000

Unit = tuple[GroupKey, int, int]  # a piece: its group, its index in the group, its rows


@dataclass
class _Rendered:
    """Pieces rendered by the forked process: where each one's bytes are in `path`."""

    path: str
    places: list[tuple[GroupKey, int, int]]  # group, offset, length
    log: WarningLog


@dataclass
class _Output:
    """One output file being written; `entry` is its manifest entry, completed when closed."""

    key: GroupKey
    file: IO[bytes]
    digest: Any
    entry: dict[str, Any]

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
    later = fork_call(_render_units, store, marks, plan[split:], work_dir) if split < len(plan) else None
    continued = plan[split][0] if later is not None else None  # the group both processes render
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
    """Where the second process's share of the pieces begins: about half the rows."""
    total = sum(rows for _, _, rows in plan)
    if total < SPLIT_MIN_ROWS or len(plan) < 2:
        return len(plan)
    done = 0
    for position, (_, _, rows) in enumerate(plan):
        if done >= total / 2:
            return position
        done += rows
    return len(plan)


def _render_units(store: GroupStore, marks: Marks, units: list[Unit], work_dir: Path) -> _Rendered:
    """In the forked process: render `units` one after the other into a scratch file."""
    log = WarningLog()
    places: list[tuple[GroupKey, int, int]] = []
    with tempfile.NamedTemporaryFile(dir=work_dir, prefix="rendered-", suffix=".csv", delete=False) as scratch:
        for key, index, _ in units:
            data = _render_piece(store.piece(key, index), marks, log)
            places.append((key, scratch.tell(), len(data)))
            scratch.write(data)
    return _Rendered(scratch.name, places, log)


def _open_output(
    key: GroupKey,
    rows: int,
    group_cols: list[str],
    output_dir: Path,
    written: dict[GroupKey, dict[str, Any]],
    open_outputs: list[_Output],
) -> _Output:
    """Start `<uuid4>.csv` for a group; its entry goes into `written` at once (for clean-up)."""
    filename = f"{uuid.uuid4()}.csv"
    # export_portfolio's key order: output_md5 (set when closed), output_filename, output_rows, the
    # names. R writes a missing name as [null], which PACTA's Go decoder rejects; null reads as "".
    entry = {"output_md5": "", "output_filename": filename, "output_rows": rows}
    entry.update(zip(group_cols, key, strict=True))
    written[key] = entry
    output = _Output(key, (output_dir / filename).open("wb"), hashlib.md5(usedforsecurity=False), entry)
    open_outputs.append(output)
    output.write(HEADER)
    return output


def _close(output: _Output, open_outputs: list[_Output]) -> None:
    output.file.close()
    output.entry["output_md5"] = output.digest.hexdigest()
    open_outputs.remove(output)


def _render_piece(piece: GroupPiece, marks: Marks, log: WarningLog) -> bytes:
    """The rows' CSV lines. Each column is made into its part of a line (`"isin",`, the value,
    `,"currency"` and the line end) on the joined column; then the parts are interleaved."""
    values = render_values(piece.values, marks)
    _log_market_values(piece, values, marks, log)
    parts: list[str] = [""] * (3 * piece.count)
    parts[0::3] = _decorated(piece.isins, '"', '",')
    parts[1::3] = values.fields
    parts[2::3] = _decorated(piece.currencies, ',"', '"\n')
    return "".join(parts).encode("utf-8")


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
