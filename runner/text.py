"""Bounded text for messages: whatever is cut says so, and how much (stdlib only; the parser uses it).

Messages travel in the completion message (a queue message of at most 64 KiB), the result document
and the manifest; a user's file can make them as long as it likes. Every cut leaves a visible marker,
`[... 1,234 characters cut]`, so a reader knows the text goes on and by how much.
"""

from __future__ import annotations

from typing import Literal

# The marker is at most this long (a cut of up to 999,999,999,999 characters), so a limit above it
# always leaves room for some of the text.
_MARKER_MAX = len(" [... 999,999,999,999 characters cut] ")


def cut_marker(count: int) -> str:
    """The marker for `count` characters cut."""
    return f"[... {count:,} characters cut]"


def shorten(text: str, limit: int, *, keep: Literal["start", "end"] = "start") -> str:
    """`text` when it has at most `limit` characters; else its start (or its end) and the marker,
    `limit` characters in all."""
    if len(text) <= limit:
        return text
    if limit < _MARKER_MAX:
        raise ValueError(f"limit must be at least {_MARKER_MAX} characters, not {limit}")
    kept = limit - len(cut_marker(len(text))) - 1  # the marker's length only shrinks as `kept` grows
    marker = cut_marker(len(text) - kept)
    return f"{text[:kept]} {marker}" if keep == "start" else f"{marker} {text[-kept:]}"


def quoted(value: str, limit: int = 100) -> str:
    """`value` as Python's repr quotes it, for a message; a long value is cut to `limit` characters
    before quoting (the marker follows the closing quote)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r} {cut_marker(len(value) - limit)}"
