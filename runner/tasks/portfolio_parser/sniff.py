"""Pass 1 over a file's bytes: its MD5, NUL bytes, the encoding facts and the delimiter counts.

Everything PACTA guesses from the whole file before reading it (encoding, delimiter) is gathered
here in one streaming read, together with what tells pass 2 which tokenizer it may use.
"""

from __future__ import annotations

import codecs
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from runner.tasks.portfolio_parser.delimiter import CANDIDATES, DelimiterBreak, DelimiterTally
from runner.tasks.portfolio_parser.encoding import ByteFacts, unicode_codec

CHUNK_BYTES = 1 << 18
# No portfolio line is nearly this long (a few fields of tens of characters); past it the file is
# refused, and pass 1 stops keeping the line: memory stays bounded whatever the file holds.
MAX_LINE_BYTES = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
# What pass 1 looks at: the delimiter candidates, line ends, quotes and NUL.
_SPECIAL = b"".join(candidate.encode() for candidate in CANDIDATES) + b'\n\r"\x00'
_NOT_SPECIAL = bytes(byte for byte in range(256) if byte not in _SPECIAL)


@dataclass(frozen=True)
class FileFacts:
    """What one pass over the bytes found."""

    digest: Md5Thread  # the file's MD5, computed in a thread of its own: `md5` waits for it
    size: int
    nul_offset: int | None  # the first NUL byte, if any
    bytes: ByteFacts
    delimiter: str
    delimiter_consistent: bool  # every non-blank line has the same count of `delimiter`
    delimiter_break: DelimiterBreak | None  # where the most used candidate breaks, if one does
    nonblank_lines: int
    has_blank_lines: bool
    has_quotes: bool
    quotes_within_lines: bool  # every quoted string opens and closes on one line
    has_lone_cr: bool  # a carriage return not followed by a line feed ends a line too
    long_line: int | None = None  # the first line longer than MAX_LINE_BYTES; nothing after it is scanned
    widest: tuple[int, int] = (1, 0)  # (fields, line) of the line with the most fields at `delimiter`
    unicode_codec: str | None = None  # UTF-16 or UTF-32 (read through a UTF-8 copy: transcode.py)
    # (byte offset, lines before it) of line starts about a megabyte apart: where a file may be split
    checkpoints: tuple[tuple[int, int], ...] = ()

    @property
    def md5(self) -> str:
        """The file's MD5 (hex); OSError if the thread could not read the file."""
        return self.digest.hexdigest()


class _Scan:
    """Accumulates the facts chunk by chunk."""

    def __init__(self) -> None:
        self.size = 0
        self.lines_offset = 0
        self.nul_offset: int | None = None
        self.is_ascii = True
        self.utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self.is_utf8 = True
        self.cp850 = self.a_umlaut = self.o_slash = False
        self.quotes = self.lone_cr = self.blank_lines = False
        self.quotes_within_lines = True
        self.nonblank_lines = self.lines = 0
        self.checkpoints: list[tuple[int, int]] = []
        self.delimiters = DelimiterTally()
        self.long_line: int | None = None
        self.unicode_codec: str | None = None

    def feed_bytes(self, chunk: bytes) -> None:
        if not self.size:
            self.unicode_codec = unicode_codec(chunk)
        self.size += len(chunk)
        ascii_chunk = chunk.isascii()
        if not ascii_chunk:
            self.is_ascii = False
            self.cp850 = self.cp850 or any(byte in chunk for byte in (b"\x84", b"\x81", b"\x94"))
            self.a_umlaut = self.a_umlaut or b"\xe4" in chunk
            self.o_slash = self.o_slash or b"\xf8" in chunk
        # An ASCII chunk is valid UTF-8 on its own, unless a sequence begun before it is unfinished.
        if not ascii_chunk or self.utf8.getstate()[0]:
            self._check_utf8(chunk)

    def feed_lines(self, lines: bytes) -> None:
        """Whole lines; carriage returns end lines as line feeds do. The lines are scanned once,
        for the few bytes that matter; the rest works on that much smaller string."""
        special = lines.translate(None, delete=_NOT_SPECIAL)
        if self.nul_offset is None and b"\x00" in special:
            self.nul_offset = self.lines_offset + lines.index(b"\x00")
        self.lines_offset += len(lines)
        if b"\r" in special:
            self.lone_cr = self.lone_cr or lines.count(b"\r") != lines.count(b"\r\n")
            lines = lines.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            special = special.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        quotes = b'"' in special
        self.quotes = self.quotes or quotes
        line_count = special.count(b"\n")
        # Quoted strings are removed before counting. When, quotes kept, every quote is next to its
        # partner (`""`), no quoted string holds a candidate: dropping the pairs is enough.
        paired = special.replace(b'""', b"") if quotes else special
        if b'"' in paired:
            self.quotes_within_lines = False  # may be so still, but cheap to tell only this way
        counted = None if b'"' in paired or b"\x00" in paired else paired  # None: the regex route
        nonblank = self.delimiters.feed(lines, line_count, counted=counted)
        self.nonblank_lines += nonblank
        self.blank_lines = self.blank_lines or nonblank < line_count
        self.lines += line_count
        self.checkpoints.append((self.lines_offset, self.lines))

    def skip_long_line(self, data: bytes) -> None:
        """`data` starts with a line longer than MAX_LINE_BYTES: the file will be refused, so lines
        are no longer read; only NUL bytes are still looked for (a binary file is told as such)."""
        self.long_line = self.lines + 1
        self.look_for_nul(data, self.lines_offset)

    def look_for_nul(self, data: bytes, offset: int) -> None:
        """Bytes not read as lines (past a long line's start): only a NUL among them still matters."""
        if self.nul_offset is None and b"\x00" in data:
            self.nul_offset = offset + data.index(b"\x00")

    def finish(self, digest: Md5Thread) -> FileFacts:
        self._check_utf8(b"", final=True)
        delimiter, consistent = self.delimiters.best()
        return FileFacts(
            digest=digest,
            size=self.size,
            nul_offset=self.nul_offset,
            bytes=ByteFacts(self.is_ascii, self.is_utf8, self.cp850, self.a_umlaut, self.o_slash),
            delimiter=delimiter,
            delimiter_consistent=consistent,
            delimiter_break=self.delimiters.first_break(),
            nonblank_lines=self.nonblank_lines,
            has_blank_lines=self.blank_lines,
            has_quotes=self.quotes,
            quotes_within_lines=self.quotes_within_lines,
            has_lone_cr=self.lone_cr,
            checkpoints=tuple(self.checkpoints),
            long_line=self.long_line,
            widest=self.delimiters.widest(delimiter),
            unicode_codec=self.unicode_codec,
        )

    def _check_utf8(self, chunk: bytes, *, final: bool = False) -> None:
        if not self.is_utf8:
            return
        try:
            self.utf8.decode(chunk, final)
        except UnicodeDecodeError:
            self.is_utf8 = False


def scan_file(path: Path) -> FileFacts:
    """Read `path` once, in chunks; lines are cut at the last line end of what has been read.
    The MD5 is taken meanwhile in a thread (hashlib lets go of the GIL while hashing), which goes
    on while the records are read: `FileFacts.md5` waits for it."""
    digest = Md5Thread(path)
    scan = _Scan()
    carry = b""
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            scan.feed_bytes(chunk)
            if scan.long_line is not None:
                scan.look_for_nul(chunk, scan.size - len(chunk))
                continue
            data = carry + chunk
            if scan.size == len(chunk) and data.startswith(_UTF8_BOM):
                data = data[len(_UTF8_BOM) :]  # readr drops it: it makes no line non-blank
                scan.lines_offset = len(_UTF8_BOM)
            if _starts_with_long_line(data):  # lines after the first are shorter than a chunk
                scan.skip_long_line(data)
                carry = b""
                continue
            # A carriage return at the end may be the first half of a CRLF: keep it for later.
            searched = data[:-1] if data.endswith(b"\r") else data
            cut = max(searched.rfind(b"\n"), searched.rfind(b"\r")) + 1
            if cut:
                scan.feed_lines(data[:cut])
            carry = data[cut:]
    if carry:
        scan.feed_lines(carry + b"\n")
    return scan.finish(digest)


def _starts_with_long_line(data: bytes) -> bool:
    """Whether the line `data` starts with is longer than MAX_LINE_BYTES (line end not counted)."""
    return (
        len(data) > MAX_LINE_BYTES
        and data.find(b"\n", 0, MAX_LINE_BYTES + 1) == -1
        and data.find(b"\r", 0, MAX_LINE_BYTES + 1) == -1
    )


class Md5Thread:
    """The MD5 of a file, computed in a thread of its own."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._digest = ""
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="input-md5", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until the digest is taken (or failed: `hexdigest` raises its error)."""
        self._thread.join()

    def hexdigest(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest

    def _run(self) -> None:
        try:
            with self._path.open("rb") as stream:
                self._digest = hashlib.file_digest(stream, _md5).hexdigest()
        except OSError as error:
            self._error = error


def _md5() -> hashlib._Hash:
    return hashlib.md5(usedforsecurity=False)
