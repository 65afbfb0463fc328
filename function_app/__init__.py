"""The Functions app: bindings only. Each blueprint turns a trigger into a call to `orchestrations`.

The worker imports this through the entry module (`entry.py`, named by PYTHON_SCRIPT_FILE_NAME).
Settings are read and validated here, at indexing time, so a bad setting stops the start-up with a
message that names it, instead of failing the first run.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from function_app import api, completions, durable, operations, ui, uploads
from orchestrations import log_context, runtime, telemetry
from orchestrations.errors import ConfigurationError

# Lines as LOG_FORMAT says (JSON lines in Azure), each carrying the run it is about.
log_context.install(runtime.settings().log_output, secrets=log_context.secrets_of(runtime.settings()))
# Spans and run metrics where APPLICATIONINSIGHTS_CONNECTION_STRING or the OTEL_* settings say; none otherwise.
try:
    telemetry.configure("pacta-functions")
except telemetry.TelemetryConfigError as exc:
    raise ConfigurationError("invalid_settings", f"The app settings are invalid: {exc}.") from None
# Build the job backend now: RUNNER_BACKEND=docker without an engine must fail the start-up.
runtime.backend()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (uploads.bp, completions.bp, api.bp, operations.bp, ui.bp, durable.bp):
    app.register_functions(blueprint)
