"""The runner: the program inside the runner image (`python -m runner`).

It reads its environment, downloads the task's input blobs, runs the task, uploads the outputs, its
log and a result document, then puts one completion message on the events queue; each phase is a span
of the run's trace (runner/tracing.py). It depends on `orchestrations.contracts` and
`orchestrations.telemetry` alone (plus pydantic, the Azure storage SDKs and OpenTelemetry), because the
image carries nothing else of the project. `python -m runner --help` lists the local subcommands.
"""

__version__ = "0.1.0"
