"""Activity retry options with exponential backoff.

azure-functions-durable 1.7's `RetryOptions` sends only the first interval and the attempt count, so
the Durable extension would retry at a fixed interval. The extension's retry options also read
`backoffCoefficient` and `maxRetryIntervalInMilliseconds` (the JavaScript SDK sends them), so this
subclass adds them to the wire form. Everything else is the SDK's own class.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from orchestrations.contracts import RetryPolicy


class BackoffRetryOptions(df.RetryOptions):
    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(
            first_retry_interval_in_milliseconds=int(policy.first_interval_seconds * 1000),
            max_number_of_attempts=policy.max_attempts,
        )
        self.backoff_coefficient = policy.backoff_coefficient
        self.max_retry_interval_in_milliseconds = int(policy.max_interval_seconds * 1000)

    def to_json(self) -> dict[str, Any]:
        wire: dict[str, Any] = dict(super().to_json())
        wire["backoffCoefficient"] = self.backoff_coefficient
        wire["maxRetryIntervalInMilliseconds"] = self.max_retry_interval_in_milliseconds
        return wire
