"""Queue trigger on the runner's completion messages."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from orchestrations import completions, runtime

bp = df.Blueprint()


@bp.queue_trigger(
    arg_name="message", queue_name=runtime.settings().runner_events_queue, connection="AzureWebJobsStorage"
)
@bp.durable_client_input(client_name="client")
async def on_runner_event(message: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    body = message.get_body().decode("utf-8", errors="replace")
    await completions.handle_runner_message(
        body, client, run_store=runtime.run_store(), token_key=runtime.settings().callback_token_key
    )
