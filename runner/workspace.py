"""The run's working directory: `input/` (downloads), `output/` (task products), `runner.log`."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrations.contracts import RunnerEnv
from runner.errors import InvalidEnvironmentError

_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")
# Local names are ASCII (unsafe characters replaced), so characters are bytes: far below the 255
# bytes of a file name, whatever the blob name's length. Shorter names are kept as they are.
MAX_LOCAL_NAME_CHARS = 100
MAX_SUFFIX_CHARS = 16  # a longer "extension" is part of the name, not a file type
DIGEST_CHARS = 12


@dataclass(frozen=True)
class Workspace:
    root: Path
    temporary: bool

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def log_path(self) -> Path:
        return self.root / "runner.log"

    @classmethod
    def create(cls, work_dir: Path | None) -> Workspace:
        """A fresh temporary directory, or `work_dir` if its input/ and output/ are still empty."""
        if work_dir is None:
            workspace = cls(Path(tempfile.mkdtemp(prefix="pacta-runner-")), temporary=True)
        else:
            workspace = cls(work_dir, temporary=False)
            for folder in (workspace.input_dir, workspace.output_dir):
                if folder.is_dir() and any(folder.iterdir()):
                    raise InvalidEnvironmentError(
                        f"{RunnerEnv.WORK_DIR} holds files from an earlier run in {folder}; "
                        "empty it or unset the variable"
                    )
        try:
            workspace.input_dir.mkdir(parents=True, exist_ok=True)
            workspace.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InvalidEnvironmentError(
                f"{RunnerEnv.WORK_DIR}: cannot create {error.filename}: {error.strerror}"
            ) from None
        return workspace

    def local_input_name(self, blob_name: str) -> str:
        """A safe, unused file name in `input/` for a blob: its base name, numbered when taken.

        Unsafe characters become `_`. A base name over MAX_LOCAL_NAME_CHARS keeps its start and its
        extension, with a digest of the whole blob name between them, so the name is bounded (a
        blob name may have 1,024 characters, a file name 255 bytes) and two long names differ."""
        base = _UNSAFE_CHARACTERS.sub("_", PurePosixPath(blob_name).name).lstrip(".") or "input"
        stem, dot, suffix = base.rpartition(".")
        if not dot or not stem or len(suffix) > MAX_SUFFIX_CHARS:
            stem, suffix = base, ""
        suffix = f".{suffix}" if suffix else ""
        digest = ""
        if len(base) > MAX_LOCAL_NAME_CHARS:
            digest = "-" + hashlib.sha256(blob_name.encode("utf-8")).hexdigest()[:DIGEST_CHARS]

        def fitted(ending: str) -> str:
            return stem[: MAX_LOCAL_NAME_CHARS - len(digest) - len(ending)] + digest + ending

        candidate, number = fitted(suffix), 1
        while (self.input_dir / candidate).exists():
            number += 1
            candidate = fitted(f"-{number}{suffix}")
        return candidate

    def remove_if_temporary(self) -> None:
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)
