"""PACTA's FileType of an artifact, from its name, and the content type it is uploaded with.

`file_type` is PACTA's `fileTypeFromFilename` (pacta-contract.md 1.4): the extension after the last
dot, case-sensitive as Go's `filepath.Ext` is; `.map` counts only as `js.map` or `css.map`; anything
else is `unknown` (still uploaded, as PACTA did). PACTA uploaded without a content type; we set one,
so a report served straight from storage renders in a browser.
"""

from __future__ import annotations

import mimetypes
from typing import Final

UNKNOWN: Final = "unknown"

# extension -> (PACTA FileType, content type)
_BY_EXTENSION: Final[dict[str, tuple[str, str]]] = {
    ".csv": ("csv", "text/csv; charset=utf-8"),
    ".yaml": ("yaml", "application/yaml"),
    ".zip": ("zip", "application/zip"),
    ".html": ("html", "text/html; charset=utf-8"),
    ".json": ("json", "application/json"),
    ".txt": ("txt", "text/plain; charset=utf-8"),
    ".css": ("css", "text/css; charset=utf-8"),
    ".js": ("js", "text/javascript; charset=utf-8"),
    ".ttf": ("ttf", "font/ttf"),
    ".woff": ("woff", "font/woff"),
    ".woff2": ("woff2", "font/woff2"),
    ".eot": ("eot", "application/vnd.ms-fontobject"),
    ".svg": ("svg", "image/svg+xml"),
    ".png": ("png", "image/png"),
    ".jpg": ("jpg", "image/jpeg"),
    ".pdf": ("pdf", "application/pdf"),
    ".xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".rds": ("rds", "application/octet-stream"),
}
_SOURCE_MAPS: Final[dict[str, str]] = {".js": "js.map", ".css": "css.map"}
_FALLBACK_CONTENT_TYPE: Final = "application/octet-stream"


def go_ext(name: str) -> str:
    """Go's `filepath.Ext` of a base name: from the last dot on, or empty (`.Rprofile` -> itself)."""
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def file_type(name: str) -> str:
    """PACTA's FileType of a file called `name` (a base name), `unknown` when PACTA has none."""
    extension = go_ext(name)
    if extension == ".map":
        return _SOURCE_MAPS.get(go_ext(name[: -len(extension)]), UNKNOWN)
    known = _BY_EXTENSION.get(extension)
    return known[0] if known else UNKNOWN


def content_type(name: str) -> str:
    """The content type to upload `name` with: ours for PACTA's types, else a guess, else binary."""
    if file_type(name) in _SOURCE_MAPS.values():
        return "application/json"
    known = _BY_EXTENSION.get(go_ext(name))
    if known:
        return known[1]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or _FALLBACK_CONTENT_TYPE
