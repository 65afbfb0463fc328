"""Callback tokens: derived, never stored, never in the orchestration's history.

A run's token is an HMAC of its run id and start attempt under the app's key (`CALLBACK_TOKEN_KEY`).
Every activity execution derives the same token, however often it runs (activities run at least
once), so the token the runner holds and the one the app checks cannot drift apart; and as the app
derives it again wherever it checks one, no history, record or log has to hold it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import SecretStr

from orchestrations.contracts import result_proof

_CONTEXT = b"pacta-runner callback token v1"


def derive_callback_token(key: SecretStr, run_id: str, attempt: int) -> str:
    """The callback token of one attempt of one run (43 URL-safe characters, 256 bits)."""
    message = b"\n".join((_CONTEXT, run_id.encode(), str(attempt).encode()))
    digest = hmac.new(key.get_secret_value().encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_valid_token(key: SecretStr, run_id: str, attempt: int, token: str) -> bool:
    """Whether `token` is this attempt's token (compared in constant time)."""
    return hmac.compare_digest(derive_callback_token(key, run_id, attempt).encode(), token.encode())


def is_valid_proof(key: SecretStr, run_id: str, attempt: int, document: bytes, proof: str) -> bool:
    """Whether `proof` is the runner's proof over exactly these document bytes."""
    expected = result_proof(derive_callback_token(key, run_id, attempt), document)
    return hmac.compare_digest(expected.encode(), proof.encode())
