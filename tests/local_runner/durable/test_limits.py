"""The extension's limits, checked on their own: custom status size, delays, retry caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from local_runner.host.durable.limits import (
    custom_status_error,
    long_timer_error,
    retry_interval_error,
)
from local_runner.host.durable.state import RetryState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_custom_status_is_measured_as_compact_json_in_utf16_code_units():
    """MessagePayloadDataConverter.Serialize (azure-functions-durable-extension L41-75): compact
    JSON (JToken.ToString(Formatting.None)), `Encoding.Unicode.GetByteCount` bytes, KB = bytes /
    1024 rounded down, refused above 16. A character outside the BMP is two UTF-16 code units."""
    emoji = "\U0001F600"
    assert custom_status_error(emoji * 4350) is None  # 8,700 units + 2 quotes = 17,404 bytes
    assert custom_status_error(emoji * 4351) == (
        "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. "
        "The current payload size is 17 KB."
    )
    # Compact JSON: {"k":"..."} has 8 characters besides the value.
    assert custom_status_error({"k": "x" * (8704 - 8)}) is not None
    assert custom_status_error({"k": "x" * (8703 - 8)}) is None
    assert custom_status_error(None) is None


def test_retry_intervals_are_checked_max_first_against_six_days():
    """DurableOrchestrationContext.CallDurableTaskFunctionAsync L548-558 (MaxRetryInterval, then
    FirstRetryInterval), AzureStorageDurabilityProvider.ValidateDelayTime L178-187."""
    six_days_ms = 6 * 24 * 3600 * 1000
    both_long = {"firstRetryIntervalInMilliseconds": six_days_ms + 1,
                 "maxRetryIntervalInMilliseconds": six_days_ms + 1}

    assert retry_interval_error(both_long) == (
        "The Azure Storage provider supports a maximum of 6 days for time-based delays "
        "(Parameter 'MaxRetryInterval')"
    )
    assert retry_interval_error({"firstRetryIntervalInMilliseconds": six_days_ms}) is None


def test_a_retry_backs_off_to_at_most_six_days_when_no_maximum_is_sent():
    """RetryInterceptor.ComputeNextDelay caps at MaxRetryInterval, which the extension's
    RetryOptions sets to 6 days when the SDK sends none (RetryOptions.cs L18, L31)."""
    retry = RetryState(
        first_seq=0, name="a", input=None, attempts=1, current_seq=0,
        options={"firstRetryIntervalInMilliseconds": 3_600_000, "maxNumberOfAttempts": 99,
                 "backoffCoefficient": 2},
    )

    assert retry.delay_seconds(1) == 3600
    assert retry.delay_seconds(20) == 6 * 24 * 3600


def test_a_timer_up_to_six_days_ahead_is_accepted_and_one_beyond_is_refused():
    """DurableOrchestrationContext.CreateTimer L345: split only when `fireAt - now >
    MaximumDelayTime` (6 days, AzureStorageDurabilityProvider.cs L68)."""
    assert long_timer_error(3, NOW + timedelta(days=6), NOW) is None
    refused = long_timer_error(3, NOW + timedelta(days=6, seconds=1), NOW)
    assert refused is not None and refused.startswith("Timer #3 fires at 2026-01-07T00:00:01+00:00")
