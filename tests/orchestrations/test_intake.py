"""Admitting uploads: every bad upload gets a reason a person can act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from orchestrations.contracts import MAX_REQUEST_ENV_BYTES, RunPolicy, RunRequest, TaskType
from orchestrations.intake import Rejection, Upload, admit_upload, derive_run_id

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PORTFOLIO = b"isin,market_value,currency\nGB0007980591,10000,USD\n"


def admit(name: str, content: bytes = PORTFOLIO, *, max_bytes: int = 1024 * 1024) -> RunRequest | Rejection:
    upload = Upload(container="uploads", name=name, etag='"0x8D1"', content=content)
    return admit_upload(upload, max_bytes=max_bytes, policy=RunPolicy(), now=NOW)


def rejection_code(decision: RunRequest | Rejection) -> str:
    assert isinstance(decision, Rejection), f"expected a rejection, got {decision}"
    return decision.error.code


def test_portfolio_upload_becomes_a_parse_request_for_that_blob() -> None:
    request = admit("parse_portfolio/my portfolio.csv")

    assert isinstance(request, RunRequest)
    assert request.task_type is TaskType.PARSE_PORTFOLIO
    assert request.inputs == ["az://uploads/parse_portfolio/my portfolio.csv"]
    assert request.pacta_request() == {"IncompleteUploadIDs": [], "BlobURIs": request.inputs}
    assert request.run_id == derive_run_id("uploads", "parse_portfolio/my portfolio.csv", '"0x8D1"')


def test_report_request_document_supplies_the_inputs() -> None:
    document = {"AnalysisID": "analysis.1", "BlobURIs": ["az://parsedportfolios/a.csv"]}

    request = admit("create_report/r.json", json.dumps(document).encode())

    assert isinstance(request, RunRequest)
    assert request.inputs == ["az://parsedportfolios/a.csv"]
    assert request.pacta_request() == document


def test_same_blob_version_gives_the_same_run_id_and_a_new_version_a_new_one() -> None:
    first = derive_run_id("uploads", "parse_portfolio/a.csv", '"0x1"')

    assert derive_run_id("uploads", "parse_portfolio/a.csv", '"0x1"') == first
    assert derive_run_id("uploads", "parse_portfolio/a.csv", '"0x2"') != first


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("make_coffee/a.csv", "unknown_task_type", "not a task type"),
        ("parse_portfolio/../secrets.csv", "invalid_name", "'..'"),
        ("parse_portfolio/a\x07b.csv", "invalid_name", "control characters"),
        ("parse_portfolio/" + "a" * 1100 + ".csv", "invalid_name", "limit is 1024"),
        ("portfolio.csv", "invalid_name", "<task_type>/<file>"),
        ("parse_portfolio/a.xlsx", "wrong_file_type", ".csv"),
    ],
)
def test_bad_names_are_rejected_with_a_reason(name: str, code: str, words: str) -> None:
    decision = admit(name)

    assert rejection_code(decision) == code
    assert isinstance(decision, Rejection) and words in decision.error.message


def test_empty_upload_is_rejected() -> None:
    assert rejection_code(admit("parse_portfolio/a.csv", b"")) == "empty_upload"


def test_oversized_upload_names_the_limit_setting() -> None:
    decision = admit("parse_portfolio/a.csv", b"x" * 101, max_bytes=100)

    assert rejection_code(decision) == "upload_too_large"
    assert isinstance(decision, Rejection) and "UPLOAD_MAX_BYTES" in decision.error.message


def test_request_document_that_is_not_json_says_where_it_breaks() -> None:
    decision = admit("create_audit/a.json", b'{"BlobURIs": [}')

    assert rejection_code(decision) == "invalid_request"
    assert isinstance(decision, Rejection) and "line 1, column" in decision.error.message


def test_request_document_over_128_kib_is_rejected() -> None:
    document = json.dumps({"BlobURIs": ["az://p/a.csv"], "pad": "x" * MAX_REQUEST_ENV_BYTES}).encode()

    assert rejection_code(admit("create_dashboard/a.json", document)) == "request_too_large"


def test_request_document_without_inputs_is_rejected() -> None:
    assert rejection_code(admit("create_report/a.json", b'{"AnalysisID": "x"}')) == "invalid_request"


def test_holdings_date_portfolio_name_and_inherit_travel_to_the_runner_unchanged() -> None:
    document = {
        "AnalysisID": "analysis.1", "BlobURIs": ["az://parsedportfolios/a.csv", "az://parsedportfolios/b.csv"],
        "HoldingsDate": "2022-12-31", "PortfolioName": "Pension fund", "Inherit": "GENERAL_2022Q4",
    }

    request = admit("create_report/r.json", json.dumps(document).encode())

    assert isinstance(request, RunRequest)
    assert request.pacta_request() == document
    assert request.inputs == document["BlobURIs"]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("HoldingsDate", "31.12.2023", "HoldingsDate: must be a date written YYYY-MM-DD"),
        ("HoldingsDate", "2023-02-30", "HoldingsDate: must be a date written YYYY-MM-DD"),
        ("PortfolioName", "  ", "PortfolioName: must be 1 to 256 characters, not blank"),
        ("Inherit", "../GENERAL", "Inherit: must be 1 to 128 letters"),
        ("AnalysisID", "analysis/1", "AnalysisID: must be 1 to 128 letters"),
        ("AnalysisID", 7, "AnalysisID: Input should be a valid string"),
    ],
)
def test_a_bad_analysis_field_is_rejected_naming_it(field: str, value: object, words: str) -> None:
    document = {"BlobURIs": ["az://parsedportfolios/a.csv"], field: value}

    decision = admit("create_audit/a.json", json.dumps(document).encode())

    assert rejection_code(decision) == "invalid_request"
    assert isinstance(decision, Rejection) and words in decision.error.message
