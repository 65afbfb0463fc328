"""Blob trigger on the uploads container: every upload becomes a run or a recorded rejection.

The trigger binds to `BlobClient` (an SDK-type binding, package azurefunctions-extensions-bindings-blob):
the Functions host passes the worker a reference to the blob, never its content, so an upload of any
size costs no memory here. The intake reads the blob's properties, and the content only of a request
document it accepts.
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.durable_functions as df
import azurefunctions.extensions.bindings.blob as blob_binding

from orchestrations import intake, runtime

bp = df.Blueprint()
settings = runtime.settings()


@bp.blob_trigger(
    arg_name="blob",
    path=f"{settings.uploads_container}/{{name}}",
    connection="AzureWebJobsStorage",
    source=settings.upload_source.value,
)
@bp.durable_client_input(client_name="client")
async def on_upload(blob: blob_binding.BlobClient, client: df.DurableOrchestrationClient) -> None:
    await intake.handle_upload(
        intake.StoredUpload(blob), client, run_store=runtime.run_store(), max_bytes=settings.upload_max_bytes,
        input_scopes=settings.input_scopes, policy=settings.run_policy(), now=datetime.now(UTC),
    )
