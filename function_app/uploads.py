"""Blob trigger on the uploads container: every upload becomes a run or a recorded rejection."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from orchestrations import intake, runtime

bp = df.Blueprint()
settings = runtime.settings()


@bp.blob_trigger(
    arg_name="blob",
    path=f"{settings.uploads_container}/{{name}}",
    connection="AzureWebJobsStorage",
    source=settings.upload_trigger_source.value,
)
@bp.durable_client_input(client_name="client")
async def on_upload(blob: func.InputStream, client: df.DurableOrchestrationClient) -> None:
    container, _, name = (blob.name or "").partition("/")
    content = blob.read()
    # The worker passes azure.functions.blob.InputStream; the abstract type lacks blob_properties.
    properties = getattr(blob, "blob_properties", None) or {}
    # The host passes the blob's ETag; should it ever be absent, the content hash still identifies
    # this version of the blob, so a redelivery does not start a second run.
    etag = str(properties.get("ETag") or properties.get("Etag") or hashlib.sha256(content).hexdigest())
    upload = intake.Upload(container=container, name=name, etag=etag, content=content)
    await intake.handle_upload(
        upload, client, run_store=runtime.run_store(), max_bytes=settings.upload_max_bytes,
        policy=settings.run_policy(), now=datetime.now(UTC),
    )
