"""Given-steps the API and CLI tests share: runs that have ended a known way, on a started host."""

from __future__ import annotations

from pathlib import Path

from orchestrations.contracts import RunRecord
from tests.flow.conftest import FlowEnv, wait_for_end

# An upload under a task type the app does not know: rejected at once, with no job and no log.
UNKNOWN_TASK_UPLOAD = ("make_report/portfolio.csv", b"isin,market_value,currency\n")


def ended_run(flow: FlowEnv, fixtures_dir: Path, portfolio: str = "simple.csv") -> RunRecord:
    """A parse run of the shared fixture `portfolio`, uploaded and waited for until it ended."""
    run_id = flow.upload(f"parse_portfolio/{Path(portfolio).name}", (fixtures_dir / portfolio).read_bytes())
    return wait_for_end(flow, run_id)


def rejected_run(flow: FlowEnv) -> RunRecord:
    """A rejected upload's run (no orchestration, no log)."""
    return wait_for_end(flow, flow.upload(*UNKNOWN_TASK_UPLOAD))
