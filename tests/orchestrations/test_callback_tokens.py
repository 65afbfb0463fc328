"""Callback tokens are derived, stable and secret; the app's key is a validated setting that is never echoed."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from orchestrations.callback_tokens import derive_callback_token, is_valid_proof, is_valid_token
from orchestrations.contracts import result_proof
from orchestrations.errors import ConfigurationError
from orchestrations.settings import load_settings

KEY = SecretStr("k" * 48)
OTHER_KEY = SecretStr("q" * 48)
RUN = "run-0123456789abcdef01234567"


def test_every_derivation_of_one_runs_attempt_gives_the_same_token() -> None:
    """Activities run at least once: each execution must hand the runner the token the app will check."""
    tokens = {derive_callback_token(SecretStr("k" * 48), RUN, 1) for _ in range(3)}

    assert len(tokens) == 1
    [token] = tokens
    assert len(token) == 43 and token.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(("key", "run_id", "attempt"), [(OTHER_KEY, RUN, 1), (KEY, RUN + "x", 1), (KEY, RUN, 2)])
def test_another_key_run_or_attempt_gives_another_token(key: SecretStr, run_id: str, attempt: int) -> None:
    token = derive_callback_token(KEY, RUN, 1)

    assert derive_callback_token(key, run_id, attempt) != token
    assert not is_valid_token(key, run_id, attempt, token)
    assert is_valid_token(KEY, RUN, 1, token)


def test_a_proof_holds_for_exactly_the_proved_bytes_of_that_attempt() -> None:
    document = b'{"TaskID": "run"}'
    proof = result_proof(derive_callback_token(KEY, RUN, 1), document)

    assert is_valid_proof(KEY, RUN, 1, document, proof)
    assert not is_valid_proof(KEY, RUN, 1, document + b" ", proof)
    assert not is_valid_proof(KEY, RUN, 2, document, proof)
    assert not is_valid_proof(OTHER_KEY, RUN, 1, document, proof)
    assert not is_valid_proof(KEY, RUN, 1, document, "not a proof")


def test_a_missing_key_stops_the_start_up_naming_the_setting_and_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CALLBACK_TOKEN_KEY")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "CALLBACK_TOKEN_KEY: Field required" in raised.value.message
    assert "python -m local_runner callback-key" in raised.value.message


def test_a_short_key_is_refused_without_repeating_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBACK_TOKEN_KEY", "hunter2-is-not-a-key")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "CALLBACK_TOKEN_KEY: Value error, must be at least 32 random characters" in raised.value.message
    assert "hunter2" not in raised.value.message


@pytest.mark.parametrize(
    "setting", ["STATUS_CHECK_INTERVAL_SECONDS", "COMPLETION_GRACE_SECONDS", "ACTIVITY_FIRST_RETRY_SECONDS"]
)
def test_no_setting_can_ask_for_a_durable_timer_of_six_days_or_more(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """Each of these is one durable timer's length; the Azure Storage provider refuses timers beyond 6 days."""
    monkeypatch.setenv(setting, str(6 * 24 * 3600))

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert f"{setting}: Input should be less than or equal to 518340" in raised.value.message
