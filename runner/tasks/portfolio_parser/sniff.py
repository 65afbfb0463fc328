"""Pass 1 over a file's bytes: its MD5, NUL bytes, the encoding facts and the delimiter counts.

Everything PACTA guesses from the whole file before reading it (encoding, delimiter) is gathered
here in one streaming read, together with what tells pass 2 which tokenizer it may use.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path
from typing import NamedTuple

from runner.tasks.portfolio_parser.delimiter import CANDIDATES, DelimiterBreak, DelimiterTally
from runner.tasks.portfolio_parser.encoding import ByteFacts, unicode_codec
from runner.tasks.portfolio_parser.parallel import fork_call

CHUNK_BYTES = 1 << 18
MD5_CHUNK_BYTES = 4 << 20  # file_md5's reads
# From this size on the MD5 is taken in a process of its own (a fork costs a millisecond or two;
# hashing a megabyte about as much).
MD5_PROCESS_MIN_BYTES = 1 << 20
# No portfolio line is nearly this long (a few fields of tens of characters); past it the file is
# refused, and pass 1 stops keeping the line: memory stays bounded whatever the file holds.
MAX_LINE_BYTES = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
# What pass 1 looks at: the delimiter candidates, line ends, quotes and NUL.
_SPECIAL = b"".join(candidate.encode() for candidate in CANDIDATES) + b'\n\r"\x00'
_NOT_SPECIAL = bytes(byte for byte in range(256) if byte not in _SPECIAL)


class FileFacts(NamedTuple):
    """What one pass over the bytes found."""

    digest: FileMd5  # the file's MD5, taken in another process: `md5` waits for it
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
        """The file's MD5 (hex); OSError if the file could not be read."""
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

    def finish(self, digest: FileMd5) -> FileFacts:
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


# MD5s started before the parser was imported (start_md5s), by path, until scan_file takes them.
_started: dict[Path, FileMd5] = {}


def start_md5s(paths: list[Path]) -> None:
    """Start taking the MD5 of each of `paths` now (a process each, for a file of 1 MiB or more), for
    `scan_file` to find: `python -m runner parse-portfolio` calls it for the first file before it
    imports the rest of the parser, so that the hashing runs on the core start-up leaves idle.
    `cancel_started` ends the ones never asked for."""
    for path in paths:
        _started[path] = FileMd5(path)


def cancel_started() -> None:
    """End the processes of the MD5s started but never taken (their files were not parsed)."""
    while _started:
        _started.popitem()[1].cancel()


def scan_file(path: Path, *, md5: FileMd5 | None = None) -> FileFacts:
    """Read `path` once, in chunks; lines are cut at the last line end of what has been read.
    The MD5 is taken meanwhile in another process (FileMd5), which goes on while the records
    are read: `FileFacts.md5` waits for it. `md5`: the file's MD5 is that one (a copy's)."""
    digest = md5 if md5 is not None else _started.pop(path) if path in _started else FileMd5(path)
    try:
        return _scan(path, digest)
    except BaseException:
        if md5 is None:
            digest.cancel()  # no one will ask for it: end its process
        raise


def _scan(path: Path, digest: FileMd5) -> FileFacts:
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


class FileMd5:
    """The MD5 of a file: taken in a forked process (parallel.fork_call) while this one reads the
    file, when it is large; when asked for, when it is small.

    Not a thread, as it was: a thread's hashing took the GIL back after every read, and those
    handovers doubled pass 1's time; and the parse had to wait for the thread to end before it
    could fork a second process (forking copies only the calling thread)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._digest = ""
        try:
            large = path.stat().st_size >= MD5_PROCESS_MIN_BYTES
        except OSError:
            large = False  # file_md5 says why
        self._pending = fork_call(file_md5, path) if large else None

    def cancel(self) -> None:
        """End its process, if it still runs (the digest will not be asked for)."""
        if self._pending is not None:
            self._pending.cancel()

    def hexdigest(self) -> str:
        """The digest (hex); OSError if the file could not be read."""
        if not self._digest:
            self._digest = self._pending.result() if self._pending is not None else file_md5(self._path)
        return self._digest


def file_md5(path: Path) -> str:
    """The MD5 (hex) of the file at `path`, read a few MiB at a time."""
    digest = hashlib.md5(usedforsecurity=False)
    buffer = bytearray(MD5_CHUNK_BYTES)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as stream:
        while size := stream.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()
