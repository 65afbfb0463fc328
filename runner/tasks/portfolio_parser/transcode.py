"""Files in UTF-16 or UTF-32 are read through a UTF-8 copy: R refuses them (a NUL byte in the first
2,048 bytes), yet Excel's "Unicode Text" and PowerShell's `Out-File` write UTF-16. The copy is made
a chunk at a time in the file's work directory and sniffed again; the MD5 stays the original's.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule
from runner.tasks.portfolio_parser.sniff import CHUNK_BYTES, FileFacts, scan_file

# Each codec unicode_codec answers: how the file is written, and the encoding's name.
_DESCRIPTIONS = {
    "utf-16": ("UTF-16 with a byte order mark", "UTF-16"),
    "utf-32": ("UTF-32 with a byte order mark", "UTF-32"),
    "utf-16-le": ("UTF-16 (little-endian) without a byte order mark", "UTF-16"),
    "utf-16-be": ("UTF-16 (big-endian) without a byte order mark", "UTF-16"),
}


def as_utf8(path: Path, facts: FileFacts, work_dir: Path) -> tuple[Path, FileFacts]:
    """`path` and its facts, or for a UTF-16/32 file a UTF-8 copy in `work_dir` and the copy's facts
    (with the original's MD5); PortfolioFileError `bad_encoding` if it does not decode."""
    if facts.unicode_codec is None:
        return path, facts
    copy = work_dir / "utf-8-copy.csv"
    decoder = codecs.getincrementaldecoder(facts.unicode_codec)("strict")
    read = 0
    try:
        with path.open("rb") as source, copy.open("wb") as target:
            while chunk := source.read(CHUNK_BYTES):
                target.write(decoder.decode(chunk).encode("utf-8"))
                read += len(chunk)
            target.write(decoder.decode(b"", final=True).encode("utf-8"))
    except UnicodeDecodeError as error:
        written, name = _DESCRIPTIONS[facts.unicode_codec]
        raise PortfolioFileError(
            Rule.BAD_ENCODING,
            f"the file is written in {written}, but the bytes near byte {read + error.start + 1:,} are not "
            f"{name} ({error.reason}); save it again as CSV UTF-8 (in Excel: Save As, CSV UTF-8)",
        ) from None
    return copy, scan_file(copy, md5=facts.digest)
