"""The orchestrator and its activities, registered under the names `run_task` calls."""

from __future__ import annotations

import azure.durable_functions as df

from orchestrations.activities import ACTIVITIES
from orchestrations.concurrency import CLIENT_ACTIVITIES
from orchestrations.run_task import run_task

bp = df.Blueprint()

bp.orchestration_trigger(context_name="context")(run_task)
for activity in ACTIVITIES.values():
    bp.activity_trigger(input_name="payload")(activity)
for client_activity in CLIENT_ACTIVITIES.values():
    bp.activity_trigger(input_name="payload")(bp.durable_client_input(client_name="client")(client_activity))
