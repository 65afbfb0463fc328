"""A create_report request through the whole flow: upload -> orchestration -> process job -> runner
running a stand-in for PACTA's run_pacta.R -> artifacts uploaded -> recorded.

Real Azurite, the real app on the in-process host, the real runner as a subprocess.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest

from local_runner.host.host import LocalHost
from orchestrations.contracts import ResultDocument, RunStatus
from tests.flow.conftest import FlowEnv, wait_for_end
from tests.runner.stand_ins.fake_run_pacta import FILES

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

# Relative on purpose: the process backend runs the runner, and so its command, in the project root.
FAKE_RUN_PACTA = [sys.executable, "tests/runner/stand_ins/fake_run_pacta.py"]
PORTFOLIO = b"investor_name,portfolio_name,isin,market_value,currency\nI,P,GB0007980591,10000,USD\n"


def test_a_report_request_runs_pactas_command_and_records_its_artifacts(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    # Requests read only what INPUT_SCOPES lists: here the uploads and the parsed portfolios.
    scopes = [f"az://{flow_env.uploads}/", f"az://{flow_env.name}-parsed/"]
    start_host(CREATE_REPORT_COMMAND=json.dumps(FAKE_RUN_PACTA), INPUT_SCOPES=json.dumps(scopes))
    parsed = flow_env.blobs.create_container(f"{flow_env.name}-parsed")
    parsed.upload_blob("0b1c2d.csv", PORTFOLIO)
    analysis_id = f"analysis.{flow_env.name}"
    request = {
        "AnalysisID": analysis_id, "BlobURIs": [f"az://{flow_env.name}-parsed/0b1c2d.csv"],
        "HoldingsDate": "2022-12-31", "PortfolioName": "Pension fund",
    }
    run_id = flow_env.upload("create_report/analysis.json", json.dumps(request).encode())

    record = wait_for_end(flow_env, run_id)

    assert record.status is RunStatus.SUCCEEDED, record.error
    expected = [f"az://reports/{analysis_id}/analysis-output/received.json"] + [
        f"az://reports/{analysis_id}/{'dashboard-output/data' if out_dir == 'dashboard-output' else out_dir}/{name}"
        for out_dir, files in FILES.items()
        for name in files
    ]
    assert sorted(record.outputs) == sorted(expected) and record.outputs_count == len(expected)
    assert record.result_uri is not None and record.log_uri is not None
    result = ResultDocument.model_validate_json(flow_env.read_blob(record.result_uri))
    assert result.output_uris() == record.outputs and result.Request == request
    index = next(a for a in result.Artifacts or [] if a.FileName == "index.html")
    assert (index.BlobURI, index.FileType) == (f"az://reports/{analysis_id}/report-output/report/index.html", "html")
    assert flow_env.read_blob(index.BlobURI) == FILES["report-output"]["report/index.html"]
    received = json.loads(flow_env.read_blob(f"az://reports/{analysis_id}/analysis-output/received.json"))
    assert received["params"] == {
        "portfolio": {"files": ["0b1c2d.csv"], "holdingsDate": "2022-12-31", "name": "Pension fund"},
        "inherit": "GENERAL_2023Q4",
    }
    assert b"[fake_run_pacta] wrote 8 file(s) into report-output" in flow_env.read_blob(record.log_uri)
