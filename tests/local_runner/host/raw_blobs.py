"""Blob writes no SDK makes: an HTTP PUT of a blob name exactly as given, signed by a container SAS.

The SDK collapses `.` and `..` segments and signs the collapsed path, so a name such as
`parse_portfolio/back\\..\\slash.csv` (Azurite stores it as `parse_portfolio/back/../slash.csv`) can
only be stored this way, as a hostile or careless client would store it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import requests
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas


def put_blob_raw(connection_string: str, container: str, name: str, content: bytes) -> requests.Response:
    """PUT a block blob under the literal `name` (only characters a URL cannot carry are escaped)."""
    service = BlobServiceClient.from_connection_string(connection_string)
    sas = generate_container_sas(
        service.account_name, container, account_key=service.credential.account_key,
        permission=ContainerSasPermissions(write=True, create=True), expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    path = quote(name, safe="/\\")
    url = f"{service.url.rstrip('/')}/{container}/{path}?{sas}"
    request = requests.Request("PUT", url, data=content, headers={"x-ms-blob-type": "BlockBlob"}).prepare()
    request.url = url  # exactly this path: no client-side normalisation of dot segments
    with requests.Session() as session:
        return session.send(request, timeout=30)
