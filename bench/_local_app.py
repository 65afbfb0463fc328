"""What the in-process-host benches share (not a bench itself): the app's settings for a private Azurite and the
process backend, each bench adding its own."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

from local_runner.azurite import AzuriteEndpoints
from local_runner.host.settings import HOST_OVERRIDE_PREFIX, load_local_settings

ROOT = Path(__file__).resolve().parent.parent


def local_app_settings(endpoints: AzuriteEndpoints, runs_dir: Path, *, hub_prefix: str) -> dict[str, str]:
    """The app on `endpoints`' Azurite with the process backend (one directory per run under `runs_dir`), its own
    task hub and a fresh callback token key; uploads found by scanning and local.settings.json's host.json
    overrides, as under `make up`."""
    overrides = {
        name: value for name, value in load_local_settings(ROOT).values.items()
        if name.startswith(f"{HOST_OVERRIDE_PREFIX}__")
    }
    return overrides | {
        "AzureWebJobsStorage": endpoints.connection_string, "PYTHON_SCRIPT_FILE_NAME": "entry.py",
        "AZURE_FUNCTIONS_ENVIRONMENT": "Development", "RUNNER_BACKEND": "process",
        "PROCESS_BACKEND_WORK_DIR": str(runs_dir), "TASK_HUB_NAME": f"{hub_prefix}{uuid.uuid4().hex[:8]}",
        "CALLBACK_TOKEN_KEY": secrets.token_urlsafe(48), "UPLOAD_TRIGGER_SOURCE": "LogsAndContainerScan",
    }
