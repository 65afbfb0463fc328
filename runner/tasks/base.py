"""What a task receives and what it hands back; the flow in runner.run does all storage I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrations.contracts import RunError, TaskType


@dataclass(frozen=True)
class TaskInput:
    """A task's inputs, already downloaded; `sources` maps each file in `input_dir` to its URI.

    `environ` is the runner's environment, for tasks with settings of their own (the create_*
    tasks' `RUNNER_TASK_COMMAND` and the variables their command inherits)."""

    task_type: TaskType
    request: dict[str, Any]
    input_dir: Path
    output_dir: Path
    sources: dict[str, str]
    run_id: str = ""
    environ: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputFile:
    """A file the flow uploads to `<output prefix><blob_name>`, or to `<container>/<blob_name>` when
    `container` is set (the create_* tasks' artifacts).

    `file_type` is PACTA's FileType (`csv`, `json`, ...). A parsed portfolio also carries the input
    blob it came from and its manifest entry, which become PACTA's `Source` and `Portfolio`.
    """

    path: Path
    blob_name: str
    content_type: str
    file_type: str
    source_uri: str | None = None
    portfolio: dict[str, Any] | None = None
    container: str | None = None


@dataclass(frozen=True)
class TaskOutcome:
    """How a task ended. A task that ran but produced nothing usable returns an `error`, not raises,
    so its manifest and per-file causes are still uploaded and recorded."""

    outputs: list[OutputFile] = field(default_factory=list)
    attachments: list[OutputFile] = field(
        default_factory=list,
        metadata={"doc": "Uploaded beside the outputs, not counted (manifests)."},
    )
    source_files: list[dict[str, Any]] = field(default_factory=list)
    error: RunError | None = None


Task = Callable[[TaskInput], TaskOutcome]
