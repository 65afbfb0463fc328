"""A stand-in for the managed identity endpoint Azure Container Apps gives a container.

The platform sets `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`; azure-identity's
ManagedIdentityCredential (through MSAL's App Service flow) then sends
`GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<resource>[&client_id=<id>]` with the
header `X-IDENTITY-HEADER: <IDENTITY_HEADER>` and reads `access_token` and `expires_on` (epoch
seconds) from the JSON answer. `IdentityEndpoint` answers that on loopback with a JWT that
Azurite's `--oauth basic` mode accepts (it checks `iss`, `aud`, `iat`/`nbf`/`exp`, not the
signature), signs it with HS256 and a throwaway key so `token_is_valid` can tell our tokens
from forged ones (a loopback ARM stand-in can use it), and records every request it answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

API_VERSION = "2019-08-01"
SECRET_HEADER = "X-IDENTITY-HEADER"
TOKEN_PATH = "/msi/token"
TOKEN_LIFETIME_SECONDS = 3600
DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-00000000f00d"
# The object id of the system-assigned identity; user-assigned ones get one derived from their client id.
SYSTEM_ASSIGNED_OBJECT_ID = "5ca1ab1e-0000-4000-8000-000000000001"
ISSUER_PREFIX = "https://sts.windows.net/"


@dataclass(frozen=True)
class TokenRequest:
    """One request the endpoint answered: the resource asked for and the client id, if any."""

    resource: str
    client_id: str | None
    granted: bool


class IdentityEndpoint:
    """The App Service / Container Apps token endpoint on 127.0.0.1, one thread per request.

    `refuse = True` makes it answer 400 as an endpoint with no identity assigned does; with
    `known_client_ids`, a client id outside it is refused as Azure refuses an unassigned
    user-assigned identity (a request without a client id asks for the system-assigned one,
    which is always there unless refused).
    """

    def __init__(
        self, *, tenant_id: str = DEFAULT_TENANT_ID, known_client_ids: Collection[str] | None = None
    ) -> None:
        self.tenant_id = tenant_id
        self.issuer = f"{ISSUER_PREFIX}{tenant_id}/"
        self.known_client_ids = frozenset(known_client_ids) if known_client_ids is not None else None
        self.secret = secrets.token_urlsafe(24)
        self.refuse = False
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The value of IDENTITY_ENDPOINT."""
        if self._server is None:
            raise RuntimeError("the identity endpoint is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{TOKEN_PATH}"

    @property
    def requests(self) -> list[TokenRequest]:
        """Every token request answered so far (granted or refused), oldest first."""
        with self._lock:
            return list(self._requests)

    def env(self) -> dict[str, str]:
        """The variables Container Apps injects into a container with a managed identity."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.endpoint = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="identity-endpoint", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; joins the serving thread and every request thread."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def mint(
        self,
        resource: str,
        client_id: str | None = None,
        *,
        lifetime: int = TOKEN_LIFETIME_SECONDS,
        issued_at: int | None = None,
    ) -> str:
        """A token for `resource` as the endpoint would give it (tests may mint odd ones)."""
        now = int(time.time()) if issued_at is None else issued_at
        claims = {
            "aud": resource,
            "iss": self.issuer,
            "tid": self.tenant_id,
            "oid": _object_id(client_id),
            "sub": _object_id(client_id),
            "appid": client_id or SYSTEM_ASSIGNED_OBJECT_ID,
            "idtyp": "app",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "ver": "1.0",
        }
        header = {"alg": "HS256", "typ": "JWT"}
        signed = f"{_encode_json(header)}.{_encode_json(claims)}"
        return f"{signed}.{_encode(self._sign(signed))}"

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this endpoint minted (signature checked), else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signature = _decode(parts[2])
            claims = json.loads(_decode(parts[1]))
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(f"{parts[0]}.{parts[1]}")):
            return None
        return claims if isinstance(claims, dict) else None

    def token_is_valid(self, token: str, resource: str) -> bool:
        """True when we minted `token`, for `resource` (trailing `/` aside), and it is current."""
        claims = self.claims(token)
        if claims is None:
            return False
        now = time.time()
        return (
            str(claims.get("aud", "")).rstrip("/") == resource.rstrip("/")
            and claims.get("iss") == self.issuer
            and claims.get("nbf", now + 1) <= now < claims.get("exp", 0)
        )

    def _sign(self, data: str) -> bytes:
        return hmac.new(self._key, data.encode("ascii"), hashlib.sha256).digest()

    def _answer(self, query: dict[str, list[str]], secret: str | None) -> tuple[HTTPStatus, dict[str, Any]]:
        """The status and JSON body for one token request."""
        if secret is None or not hmac.compare_digest(secret, self.secret):
            return HTTPStatus.UNAUTHORIZED, {"statusCode": 401, "message": f"{SECRET_HEADER} is missing or wrong."}
        if query.get("api-version") != [API_VERSION]:
            return HTTPStatus.BAD_REQUEST, {"statusCode": 400, "message": f"api-version must be {API_VERSION}."}
        resource = (query.get("resource") or [""])[0]
        if not resource:
            return HTTPStatus.BAD_REQUEST, {"statusCode": 400, "message": "resource is required."}
        client_id = query["client_id"][0] if query.get("client_id") else None
        refused = self.refuse or (
            client_id is not None and self.known_client_ids is not None and client_id not in self.known_client_ids
        )
        with self._lock:
            self._requests.append(TokenRequest(resource, client_id, granted=not refused))
        if refused:
            return HTTPStatus.BAD_REQUEST, {
                "statusCode": 400,
                "message": "Unable to load the proper Managed Identity.",
                "correlationId": str(uuid.uuid4()),
            }
        token = self.mint(resource, client_id)
        claims = self.claims(token) or {}
        return HTTPStatus.OK, {
            "access_token": token,
            "expires_on": str(claims["exp"]),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id or SYSTEM_ASSIGNED_OBJECT_ID,
        }


class _Server(ThreadingHTTPServer):
    # Request threads are joined by server_close (ThreadingMixIn only tracks non-daemon threads).
    daemon_threads = False
    endpoint: IdentityEndpoint


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != TOKEN_PATH:
            status, body = HTTPStatus.NOT_FOUND, {"statusCode": 404, "message": f"no such path: {url.path}"}
        else:
            status, body = self.server.endpoint._answer(parse_qs(url.query), self.headers.get(SECRET_HEADER))
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the endpoint's `requests` say what was asked."""


def _object_id(client_id: str | None) -> str:
    if client_id is None:
        return SYSTEM_ASSIGNED_OBJECT_ID
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"managed-identity:{client_id}"))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _encode_json(value: dict[str, Any]) -> str:
    return _encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
