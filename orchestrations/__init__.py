"""Orchestration of PACTA runs: contracts, the `run_task` orchestrator, its activities, job backends.

Nothing here imports `function_app` or `local_runner`; the runner image imports `contracts` alone,
so this package's `__init__` stays empty of imports.
"""
