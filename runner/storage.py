"""Blob and queue access for one run: download inputs, upload outputs, send the completion message.

`connect` is the one place that builds the storage clients: from the connection string (Azurite,
locally) or from the account URLs with DefaultAzureCredential (managed identity, in Azure); the
asyncio client of the concurrent uploads takes the blob client's account and credential. The
SDK's own retry policy covers transient failures; what is left becomes a RunnerError with a code,
and a credential that gives no token a StorageCredentialError.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import threading
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

# requests comes with azure-core (its default transport); only its pool size is ours.
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContentSettings
from azure.storage.queue import QueueClient

from orchestrations.contracts import RunnerEnv, RunnerEvent, blob_uri, parse_blob_uri
from orchestrations.storage_transport import storage_transport
from runner.environment import OutputPrefix, RunnerSettings
from runner.errors import EXIT_BAD_ENVIRONMENT, RunnerError
from runner.tracing import BLOB_URI_ATTRIBUTE, run_span

if TYPE_CHECKING:
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

logger = logging.getLogger(__name__)

# Inputs are downloaded in parallel ranges: portfolios are small, report inputs can be large.
DOWNLOAD_CONCURRENCY = 4
# A report has hundreds of small files, so uploads are bound by round trips, not bandwidth: this
# many run at once (bench/upload_concurrency.py measures the gain), as tasks of one asyncio event loop over the
# SDK's aiohttp transport. Threads over requests cost the client 1.7-1.9 ms of CPU per 20 KB upload at 16 at
# once (they contend for the GIL), the event loop 0.9-1.0 ms. With round trips of 10 ms it takes about 10 in
# flight to keep the client busy; 16 leave room for slower round trips (24 or 32 gave the bench 0.86-0.94 of what
# the CPU allows there, 16 0.83-0.87, all far above the 8x goal), and each upload in flight holds its file (up to
# SINGLE_PUT_BYTES) in memory: 16 x 64 MiB at worst.
UPLOAD_CONCURRENCY = 16
# A file larger than the single-put limit (the SDK's default, passed explicitly) goes in 4 MiB blocks,
# this many at once; each block in flight is held in memory, so a large upload holds about 8 x 4 MiB
# (bench/large_upload.py). Only one file goes in blocks at a time, whatever UPLOAD_CONCURRENCY.
SINGLE_PUT_BYTES = 64 * 2**20
BLOCK_CONCURRENCY = 8
# Connections each client keeps: at most the other uploads and one file's blocks are in flight at once
# (downloads are fewer, and earlier). requests keeps 10 per host unless told otherwise, and with more threads
# than that it would open and drop connections on every request ("Connection pool is full").
CONNECTION_POOL_SIZE = UPLOAD_CONCURRENCY + BLOCK_CONCURRENCY
# The storage SDK's own transport settings, which it applies only to a transport it builds itself.
CONNECTION_TIMEOUT_SECONDS = 20
READ_TIMEOUT_SECONDS = 60
DATA_BLOCK_BYTES = 256 * 1024
# azure-identity's variable for a user-assigned managed identity's client id.
CLIENT_ID_VAR = "AZURE_CLIENT_ID"
# Where Container Apps (like App Service) serves the identity's tokens; set by the platform.
IDENTITY_ENDPOINT_VAR = "IDENTITY_ENDPOINT"
# The scope of a storage data-plane token.
STORAGE_SCOPE = "https://storage.azure.com/.default"


@dataclass(frozen=True)
class StorageClients:
    blob_service: BlobServiceClient
    queue: QueueClient
    # The managed identity on the Azure path; None with a connection string.
    credential: ManagedIdentity | None = None
    # Makes the asyncio client `upload_files` sends through, inside its event loop (the client is bound to the
    # loop); None: one for blob_service's account and credential.
    async_blob_service: Callable[[], AsyncBlobServiceClient] | None = None


@dataclass(frozen=True)
class BlobFile:
    """A local file and the blob it becomes."""

    path: Path
    container: str
    name: str
    content_type: str

    @property
    def uri(self) -> str:
        return blob_uri(self.container, self.name)


class UploadsFailedError(RunnerError):
    """Uploads of a batch failed; `uploaded` maps the index of each file that did upload to its URI."""

    def __init__(self, message: str, uploaded: dict[int, str]) -> None:
        super().__init__("output_upload_failed", message)
        self.uploaded = uploaded


def blob_transport() -> RequestsTransport:
    """The app's storage transport (environment read once, when built) keeping CONNECTION_POOL_SIZE connections,
    with the storage SDK's own timeouts and block size."""
    return storage_transport(
        pool_size=CONNECTION_POOL_SIZE,
        connection_timeout=CONNECTION_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        connection_data_block_size=DATA_BLOCK_BYTES,
    )


def async_blob_transport(*, https: bool = True) -> AioHttpTransport:
    """The transport of `upload_files`' asyncio client, with `blob_transport`'s timeouts and block size, made
    inside the event loop that uses it; `https`: whether the account's URL is (else no TLS is set up).

    The CA bundle `storage_transport` honours (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) becomes one SSL context
    here: given as a path, azure-core's aiohttp transport would build a context, reading the bundle, for every
    request. The proxy variables are looked up only when some are set, as `storage_transport` does.
    """
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport

    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    # No context (nor bundle read) for Azurite over HTTP.
    tls: ssl.SSLContext | bool = _ssl_context(ca_bundle) if ca_bundle and https else True
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls, limit=CONNECTION_POOL_SIZE),
        trust_env=bool(urllib.request.getproxies()),
        # As azure-core makes its own session: no cookies, and bodies as the service sent them.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    return AioHttpTransport(
        session=session,
        session_owner=True,
        connection_timeout=CONNECTION_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        connection_data_block_size=DATA_BLOCK_BYTES,
    )


@functools.cache
def _ssl_context(ca_bundle: str) -> ssl.SSLContext:
    """One context per bundle for the process: reading a bundle costs 20-30 ms of CPU (0.05 ms per upload of a
    500-file batch), and each `upload_files` call makes a transport of its own (bound to its event loop); a
    context is bound to no loop, so they all share it."""
    return ssl.create_default_context(cafile=ca_bundle)


def connect(settings: RunnerSettings) -> StorageClients:
    """Build the blob service and events queue clients from the settings; nothing is sent yet."""
    if settings.storage_connection_string is not None:
        connection_string = settings.storage_connection_string.get_secret_value()
        return StorageClients(
            blob_service=BlobServiceClient.from_connection_string(
                connection_string, transport=blob_transport(), max_single_put_size=SINGLE_PUT_BYTES
            ),
            # No encode policy: plain text, as host.json's `messageEncoding: none` expects.
            queue=QueueClient.from_connection_string(connection_string, settings.events_queue),
        )
    # The settings validator guarantees both URLs on this path.
    assert settings.blob_account_url is not None and settings.queue_account_url is not None
    credential = ManagedIdentity(os.environ.get(CLIENT_ID_VAR) or None)
    return StorageClients(
        blob_service=BlobServiceClient(
            settings.blob_account_url,
            credential=credential,
            transport=blob_transport(),
            max_single_put_size=SINGLE_PUT_BYTES,
        ),
        queue=QueueClient(settings.queue_account_url, settings.events_queue, credential=credential),
        credential=credential,
    )


class StorageCredentialError(RunnerError):
    """No credential gave a token for storage: the runner can neither work nor report."""

    def __init__(self, message: str) -> None:
        super().__init__("storage_credential_unavailable", message, exit_code=EXIT_BAD_ENVIRONMENT)


class ManagedIdentity:
    """DefaultAzureCredential whose failure to get a token becomes a StorageCredentialError.

    DefaultAzureCredential reads AZURE_CLIENT_ID for the managed identity by itself; `client_id` is
    passed explicitly all the same, so the identity the error names is the one that was asked for.
    The error is not an AzureError on purpose: the storage SDK would retry a ClientAuthenticationError
    raised in its pipeline and the runner would then report it as a failed download or upload.
    """

    def __init__(self, client_id: str | None) -> None:
        # Imported here: only the managed identity path needs azure-identity.
        from azure.identity import DefaultAzureCredential

        self.client_id = client_id
        options = {"managed_identity_client_id": client_id} if client_id else {}
        self._credential = DefaultAzureCredential(**options)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            return self._credential.get_token(*scopes, **kwargs)
        except ClientAuthenticationError as error:
            identity = (
                f"{CLIENT_ID_VAR}={self.client_id}"
                if self.client_id
                else f"system-assigned, {CLIENT_ID_VAR} not set"
            )
            raise StorageCredentialError(
                f"Could not get a token for storage with the managed identity ({identity}): "
                f"{_credential_reason(error)}. In Azure, assign a managed identity to the job (a user-assigned "
                f"one's client id in {CLIENT_ID_VAR}) and give it data roles on the storage account; locally, set "
                f"{RunnerEnv.STORAGE_CONNECTION_STRING} instead of the account URLs."
            ) from error

    def close(self) -> None:
        self._credential.close()


class AsyncManagedIdentity:
    """The managed identity as the asyncio client asks for it: the same credential, token cache and errors.
    The token is fetched in a thread: once, and again near its expiry (the SDK's policy keeps it)."""

    def __init__(self, credential: ManagedIdentity) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        """Nothing: the credential is the sync clients' too."""

    async def __aenter__(self) -> AsyncManagedIdentity:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()


def _credential_reason(error: ClientAuthenticationError) -> str:
    """azure-identity's reason in one line: the managed identity's own, without the help links."""
    lines = [line.strip() for line in str(error.message or error).splitlines() if line.strip()]
    prefix = "ManagedIdentityCredential:"
    managed = [line.removeprefix(prefix).strip() for line in lines if line.startswith(prefix)]
    reason = (managed or lines or [type(error).__name__])[0]
    reason = reason.split(" Visit https://")[0].split(" To mitigate this issue")[0].rstrip(" .")
    if not os.environ.get(IDENTITY_ENDPOINT_VAR):
        reason += f" ({IDENTITY_ENDPOINT_VAR} is not set: Container Apps sets it only in a job with a managed identity)"
    return reason


class RunStorage:
    """The run's view of storage: inputs by URI, outputs relative to the output prefix.

    With a `run_id`, each upload of `upload_files` is a `runner.upload` span of the run's trace."""

    def __init__(self, clients: StorageClients, output_prefix: OutputPrefix, *, run_id: str | None = None) -> None:
        self._clients = clients
        self._prefix = output_prefix
        self._run_id = run_id
        # Held while a file above SINGLE_PUT_BYTES goes in blocks: their memory is taken once, not once per upload.
        self._block_upload = threading.Lock()

    def output_uri(self, relative: str) -> str:
        return self._prefix.uri(relative)

    def download(self, uri: str, destination: Path) -> None:
        """Stream the blob at `uri` into `destination`, never holding it whole in memory."""
        container, name = parse_blob_uri(uri)
        blob = self._clients.blob_service.get_blob_client(container, name)
        try:
            with destination.open("wb") as file:
                blob.download_blob(max_concurrency=DOWNLOAD_CONCURRENCY).readinto(file)
        except AzureError as error:
            raise RunnerError(
                "input_download_failed",
                f"Could not download the input {uri}: {_reason(error)}."
                + _access_hint(error, "read it"),
            ) from error
        logger.info("downloaded %s (%d bytes)", uri, destination.stat().st_size)

    def output_file(self, path: Path, relative: str, *, content_type: str) -> BlobFile:
        """The upload of a local file to `<prefix><relative>`."""
        return BlobFile(
            path, self._prefix.container, self._prefix.blob_name(relative), content_type
        )

    def upload_file(self, path: Path, relative: str, *, content_type: str) -> str:
        """Upload a local file to `<prefix><relative>` and return its URI."""
        return self._upload_file(self.output_file(path, relative, content_type=content_type))

    def upload_files(
        self, files: Sequence[BlobFile], *, concurrency: int = UPLOAD_CONCURRENCY
    ) -> list[str]:
        """Upload the files `concurrency` at a time; return their URIs in the order given.

        When some fail, those under way still finish and no other starts; UploadsFailedError names the first
        failure in the order given, with the URIs of the files that did upload. The uploads run in an event loop
        of their own, so the caller may not be inside one (the runner is synchronous).
        """
        if not files:
            return []
        workers = max(1, min(concurrency, len(files)))
        # A stop (SIGTERM's TerminatedError) ends the event loop: the uploads under way are cancelled, so the
        # failure report goes out at once.
        uploaded, failures = asyncio.run(self._upload_concurrently(files, workers))
        if failures:
            raise UploadsFailedError(
                f"{failures[0].message} ({len(failures)} of {len(files)} upload(s) failed, "
                f"{len(uploaded)} succeeded, the others were not tried)",
                uploaded,
            )
        logger.info("uploaded %d file(s), %d at a time", len(files), workers)
        return [uploaded[index] for index in range(len(files))]

    async def _upload_concurrently(
        self, files: Sequence[BlobFile], workers: int
    ) -> tuple[dict[int, str], list[RunnerError]]:
        """`workers` tasks take the files in turn; once one has failed, none takes another. Returns the URIs by
        index and the failures in the order of the files. Each task's upload span has the caller's parent: a
        task starts with a copy of the caller's context."""
        uploaded: dict[int, str] = {}
        failures: dict[int, RunnerError] = {}
        stopped = False
        turns = iter(enumerate(files))

        async def take_turns(service: AsyncBlobServiceClient) -> None:
            nonlocal stopped
            for index, file in turns:
                try:
                    uploaded[index] = await self._upload_file_async(service, file)
                except RunnerError as error:
                    failures[index] = error
                except BaseException:
                    # A stop (TerminatedError) or a fault: the other tasks start nothing more before the event
                    # loop cancels them.
                    stopped = True
                    raise
                if failures or stopped:
                    return

        async with self._async_blob_service() as service:
            await asyncio.gather(*(take_turns(service) for _ in range(workers)))
        return uploaded, [failures[index] for index in sorted(failures)]

    def _async_blob_service(self) -> AsyncBlobServiceClient:
        if self._clients.async_blob_service is not None:
            return self._clients.async_blob_service()
        from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

        sync = self._clients.blob_service
        identity = self._clients.credential
        return AsyncBlobServiceClient(
            sync.url,  # with the SAS, if the connection string gave one
            # The shared key policy is what the SDK itself hands from a client to the clients it makes.
            credential=AsyncManagedIdentity(identity) if identity is not None else sync.credential,
            transport=async_blob_transport(https=sync.scheme == "https"),
            max_single_put_size=SINGLE_PUT_BYTES,
        )

    def upload_bytes(
        self, data: bytes, relative: str, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> str:
        """Upload `data` to `<prefix><relative>` (with blob metadata, if given) and return its URI."""
        name = self._prefix.blob_name(relative)
        return self._upload(data, self._prefix.container, name, content_type=content_type, metadata=metadata)

    def check_credential(self) -> None:
        """Get a storage token now (managed identity only): without one the run can neither work nor
        report, and StorageCredentialError says so before anything is downloaded."""
        if self._clients.credential is not None:
            self._clients.credential.get_token(STORAGE_SCOPE)

    def send_event(self, event: RunnerEvent) -> None:
        """Put the completion message on the events queue; the queue is created only if missing.

        Only then: in Azure the deployment makes the queue and the runner's identity may send to it
        and nothing more (infra/app/rbac.bicep), so an up-front create would be refused there.
        """
        queue = self._clients.queue
        try:
            try:
                queue.send_message(event.to_message())
            except ResourceNotFoundError:  # QueueNotFound: a fresh Azurite, locally
                with suppress(ResourceExistsError):
                    queue.create_queue()
                queue.send_message(event.to_message())
        except AzureError as error:
            raise RunnerError(
                "event_send_failed",
                f"Could not send the completion message to queue {queue.queue_name}: "
                f"{_reason(error)}." + _access_hint(error, "send to the queue"),
            ) from error
        logger.info(
            "sent the %s completion message to queue %s", event.status.value, queue.queue_name
        )

    def close(self) -> None:
        self._clients.blob_service.close()
        self._clients.queue.close()

    async def _upload_file_async(self, service: AsyncBlobServiceClient, file: BlobFile) -> str:
        span = (
            run_span("runner.upload", self._run_id, attributes={BLOB_URI_ATTRIBUTE: file.uri})
            if self._run_id is not None
            else nullcontext()
        )
        with span:
            if file.path.stat().st_size > SINGLE_PUT_BYTES:
                # In blocks, through the sync client and its threads, one file at a time (`_upload_file`).
                return await asyncio.to_thread(self._upload_file, file)
            blob = service.get_blob_client(file.container, file.name)
            with file.path.open("rb") as data:
                try:
                    try:
                        await blob.upload_blob(data, **_put_options(file.content_type))
                    except ResourceNotFoundError as error:
                        if _error_code(error) != "ContainerNotFound":
                            raise
                        with suppress(ResourceExistsError):  # made by a concurrent upload
                            await service.create_container(file.container)
                        logger.info("created container %s", file.container)
                        data.seek(0)
                        await blob.upload_blob(data, **_put_options(file.content_type))
                except AzureError as error:
                    raise _upload_failed(file.uri, error) from error
        logger.info("uploaded %s", file.uri)
        return file.uri

    def _upload_file(self, file: BlobFile) -> str:
        with file.path.open("rb") as data:
            if os.fstat(data.fileno()).st_size <= SINGLE_PUT_BYTES:
                return self._upload(data, file.container, file.name, content_type=file.content_type)
            with self._block_upload:
                return self._upload(data, file.container, file.name, content_type=file.content_type)

    def _upload(
        self,
        data: bytes | BinaryIO,
        container: str,
        name: str,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> str:
        blob = self._clients.blob_service.get_blob_client(container, name)
        uri = blob_uri(container, name)

        def put() -> None:
            blob.upload_blob(data, **_put_options(content_type, metadata))

        try:
            try:
                put()
            except ResourceNotFoundError as error:
                # Only a missing container is made here (a fresh Azurite, locally): in Azure the
                # deployment makes them and the runner's identity may not (infra/app/rbac.bicep).
                if _error_code(error) != "ContainerNotFound":
                    raise
                self._create_container(container)
                if not isinstance(data, bytes):
                    data.seek(0)
                put()
        except AzureError as error:
            raise _upload_failed(uri, error) from error
        logger.info("uploaded %s", uri)
        return uri

    def _create_container(self, container: str) -> None:
        with suppress(ResourceExistsError):  # made by a concurrent upload
            self._clients.blob_service.create_container(container)
        logger.info("created container %s", container)


def _put_options(content_type: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """`upload_blob`'s options for an output: replace what is there; above the single-put limit, in blocks."""
    return {
        "overwrite": True,
        "content_settings": ContentSettings(content_type=content_type),
        "metadata": metadata,
        "max_concurrency": BLOCK_CONCURRENCY,
    }


def _upload_failed(uri: str, error: AzureError) -> RunnerError:
    return RunnerError(
        "output_upload_failed",
        f"Could not upload {uri}: {_reason(error)}." + _access_hint(error, "write to the container"),
    )


def _reason(error: AzureError) -> str:
    """A one-line cause: the service's status and error code, or the client's first message line."""
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return f"{error.status_code} {_error_code(error) or error.reason}"
    first_line = str(error.message or error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


def _error_code(error: HttpResponseError) -> str | None:
    """The storage service's error code: the SDK sets `error_code` on storage errors only (a str, or a
    StorageErrorCode, a str enum), so it is not part of the base type."""
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code)) if code else None


def _access_hint(error: AzureError, right: str) -> str:
    """Advice for a refusal (403) only: other failures carry their own cause in `_reason`."""
    if isinstance(error, HttpResponseError) and error.status_code == 403:
        return f" Check that the runner's identity may {right}."
    return ""
