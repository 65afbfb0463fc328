"""PACTA's encoding guess (`guess_file_encoding`), with valid UTF-8 read as UTF-8.

R looks at raw bytes, in order: all ASCII -> ascii; any of 0x84 0x81 0x94 -> cp850; 0xE4 ->
ISO-8859-1; 0xF8 -> cp1252; else ICU's detector (`stri_enc_detect`). That misreads UTF-8: `Ä` is
C3 84 and `—` is E2 80 94, so such files come out as cp850 mojibake. Here a file that decodes as
UTF-8 is UTF-8; the byte rules apply to the others. ICU's detector cannot be had without ICU; for
the single-byte Western text that reaches it, it usually answers ISO-8859-1 (windows-1252 when bytes
0x80-0x9F occur), and windows-1252 decodes both the same way; bytes windows-1252 leaves undefined
are read as ISO-8859-1 reads them instead of failing.

A file in UTF-16 or UTF-32 (R refuses it: it holds NUL bytes) is told by `unicode_codec` and read
through a UTF-8 copy (transcode.py).
"""

from __future__ import annotations

import codecs
from typing import NamedTuple

_LATIN1_FALLBACK = "portfolio-parser-latin1"
# R's binary check looks at this many bytes; so does the guess of UTF-16 without a byte order mark.
UTF16_GUESS_BYTES = 2048
# Python's "utf-16" and "utf-32" codecs read the byte order from the mark and drop it.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class ByteFacts(NamedTuple):
    """What the encoding guess needs to know about a file's bytes."""

    is_ascii: bool
    is_utf8: bool
    has_cp850_bytes: bool  # 0x84, 0x81 or 0x94: ä ü ö in cp850
    has_latin1_a_umlaut: bool  # 0xE4
    has_cp1252_o_slash: bool  # 0xF8


def unicode_codec(head: bytes) -> str | None:
    """The codec of a file in UTF-16 or UTF-32, told from its first bytes; None for any other.

    A byte order mark says so (UTF-32's before UTF-16's: FF FE 00 00 starts with FF FE). Without
    one, UTF-16 is taken when the first 2,048 bytes have NUL bytes on one side of the byte pairs
    only, and on at least half of them (mostly ASCII text, as Excel's "Unicode Text" holds)."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    pairs = head[: min(len(head), UTF16_GUESS_BYTES) // 2 * 2]
    low_first, high_first = pairs[0::2], pairs[1::2]  # ASCII "a" is 61 00 little-endian
    for nul_side, other_side, codec in ((high_first, low_first, "utf-16-le"), (low_first, high_first, "utf-16-be")):
        if len(nul_side) >= 4 and b"\x00" not in other_side and nul_side.count(0) * 2 >= len(nul_side):
            return codec
    return None


def choose_encoding(facts: ByteFacts) -> str:
    """The Python codec to read the file with."""
    if facts.is_ascii:
        return "ascii"
    if facts.is_utf8:
        return "utf-8-sig"  # readr drops a byte order mark too
    if facts.has_cp850_bytes:
        return "cp850"
    if facts.has_latin1_a_umlaut:
        return "latin-1"
    return "cp1252"  # R's 0xF8 rule, and what stands in for ICU's detector


def decode_errors(encoding: str) -> str:
    """The `errors` argument to decode with: only windows-1252 has undefined bytes."""
    return _LATIN1_FALLBACK if encoding == "cp1252" else "strict"


def _as_latin1(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    undefined = error.object[error.start : error.end]
    return bytes(undefined).decode("latin-1"), error.end


codecs.register_error(_LATIN1_FALLBACK, _as_latin1)
