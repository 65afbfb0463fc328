"""The extension's limits on what a replay may ask for: the custom status size and delay lengths.

Each check returns the error the Durable extension (Azure/azure-functions-durable-extension
@a7c6d69, v2.13.7, on DurableTask.Core 2.17.1 and DurableTask.AzureStorage 1.17.5) raises, or
None. Where it raises is the caller's business (episode.py): the extension raises these while it
replays the SDK's answer (OutOfProcOrchestrationShim.ScheduleDurableTaskEvents, L75-101).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

# AzureStorageDurabilityProvider.cs L68 / L70: MaximumDelayTime and LongRunningTimerIntervalLength,
# fixed for the Azure Storage provider (nothing in host.json sets them).
MAXIMUM_DELAY_TIME = timedelta(days=6)
LONG_RUNNING_TIMER_INTERVAL = timedelta(days=3)
# DurableOrchestrationContext.cs SetCustomStatus (L221-230): MaxCustomStatusPayloadSizeInKB.
MAX_CUSTOM_STATUS_KB = 16


def custom_status_error(custom_status: Any) -> str | None:
    """The extension's refusal of a custom status over 16 KB of UTF-16, else None.

    MessagePayloadDataConverter.Serialize(value, maxSizeInKB) (MessagePayloadDataConverter.cs
    L41-75): the value's compact JSON (JToken.ToString(Formatting.None), which leaves non-ASCII
    characters unescaped), measured as `(int)(Encoding.Unicode.GetByteCount(json) / 1024.0)`,
    so UTF-16 bytes, KB = 1024 bytes rounded down, refused when above 16: from 17 * 1024 bytes
    (8,704 UTF-16 code units) on. A null custom status is never checked
    (OutOfProcOrchestrationShim.ScheduleDurableTaskEvents L78).
    """
    if custom_status is None:
        return None
    compact = json.dumps(custom_status, separators=(",", ":"), ensure_ascii=False)
    size_kb = len(compact.encode("utf-16-le")) // 1024
    if size_kb <= MAX_CUSTOM_STATUS_KB:
        return None
    return (
        f"The UTF-16 size of the JSON-serialized payload must not exceed {MAX_CUSTOM_STATUS_KB:,} "
        f"KB. The current payload size is {size_kb:,} KB."
    )


def retry_interval_error(retry_options: dict[str, Any]) -> str | None:
    """The extension's refusal of retry intervals over 6 days, else None.

    DurableOrchestrationContext.CallDurableTaskFunctionAsync (L548-558) validates
    MaxRetryInterval, then FirstRetryInterval, with AzureStorageDurabilityProvider.ValidateDelayTime
    (L178-187: refused when longer than MaximumDelayTime) and throws ArgumentException(message,
    parameter name), whose .NET Message appends " (Parameter '<name>')". MaxRetryInterval is
    6 days when the SDK sends none (RetryOptions.cs L18, L31; RetryOptionsConverter.cs).
    """
    checks = (
        ("MaxRetryInterval", retry_options.get("maxRetryIntervalInMilliseconds")),
        ("FirstRetryInterval", retry_options.get("firstRetryIntervalInMilliseconds")),
    )
    for parameter, milliseconds in checks:
        if milliseconds is not None and timedelta(milliseconds=milliseconds) > MAXIMUM_DELAY_TIME:
            return (
                f"The Azure Storage provider supports a maximum of {MAXIMUM_DELAY_TIME.days} days "
                f"for time-based delays (Parameter '{parameter}')"
            )
    return None


def long_timer_error(seq: int, fire_at: datetime, now: datetime) -> str | None:
    """The host's refusal of a timer more than 6 days ahead, which the extension would split.

    With schema V3 the extension does not refuse such a timer (OutOfProcOrchestrationShim.
    InvokeAPIFromAction L118-135 skips ThrowIfInvalidTimerLengthForStorageProvider), but its
    CreateTimer (DurableOrchestrationContext.cs L339-410) turns any fireAt more than
    MaximumDelayTime after the current time into DTFx timers of LongRunningTimerIntervalLength
    (3 days) each, every one taking a sequence number the Python SDK does not hand out. SDK 1.7
    never asks for such a timer: `create_timer` splits a longer one itself (models/Task.py
    LongTimerTask, every chunk at most maximumShortTimerDuration ahead of the time it is created,
    each later chunk a new top-level action, LongTimerTask.add_new_child). So this only guards
    the engine against an SDK that stops doing so.
    """
    if fire_at - now <= MAXIMUM_DELAY_TIME:
        return None
    days, chunk = MAXIMUM_DELAY_TIME.days, LONG_RUNNING_TIMER_INTERVAL.days
    return (
        f"Timer #{seq} fires at {fire_at.isoformat()}, more than {days} days after "
        f"{now.isoformat()}. The Durable extension would split it into {chunk}-"
        "day timers of its own, with sequence numbers the Python SDK does not expect; the "
        "in-process durable host does not mirror that. Keep every durable timer within "
        f"{days} days (SDK 1.7's create_timer splits longer ones itself)."
    )
