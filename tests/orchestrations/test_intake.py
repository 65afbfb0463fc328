"""Admitting uploads: every bad upload gets a reason a person can act on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from orchestrations.contracts import MAX_REQUEST_ENV_BYTES, RunPolicy, RunRequest, TaskType
from orchestrations.intake import BlobVersion, Rejection, admit_upload, derive_run_id

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PORTFOLIO = b"isin,market_value,currency\nGB0007980591,10000,USD\n"
SCOPES = ["az://uploads/", "az://parsedportfolios/"]


@dataclass
class UploadInMemory:
    """An `Upload` whose bytes are at hand; it counts what intake asked of storage."""

    container: str
    name: str
    content: bytes
    etag: str = '"0x8D1"'
    asked: list[str] = field(default_factory=list)

    def get_version(self) -> BlobVersion:
        self.asked.append("properties")
        return BlobVersion(self.etag, len(self.content))

    def read(self, version: BlobVersion) -> bytes:
        self.asked.append("content")
        return self.content


def admit(
    name: str, content: bytes = PORTFOLIO, *, max_bytes: int = 1024 * 1024, scopes: Sequence[str] = SCOPES
) -> RunRequest | Rejection:
    upload = UploadInMemory(container="uploads", name=name, content=content)
    return admit_upload(upload, max_bytes=max_bytes, input_scopes=scopes, policy=RunPolicy(), now=NOW)


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
        ("parse_portfolio/a\uffffb.csv", "invalid_name", "U+FFFF, which Azure Storage queue messages cannot carry"),
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


def document_with(uris: list[str], **extra: object) -> bytes:
    return json.dumps({"AnalysisID": "analysis.1", "BlobURIs": uris, **extra}).encode()


@pytest.mark.parametrize(
    "uri",
    [
        "az://pactarunner-instances/run-0123456789/state.json",  # the durable task hub's own container
        "az://runs/run-someone-else/outputs/a.csv",  # another run's outputs
        "az://uploads-x/a.csv",  # a container whose name only starts like an allowed one
        "az://uploads/a/../../runs/x.csv",  # a dot-dot segment, resolved differently by each client
        "az://uploads//a.csv",
        "az://uploads/back\\slash.csv",
    ],
)
def test_a_request_naming_a_blob_outside_input_scopes_is_refused_naming_the_uri_and_the_setting(uri: str) -> None:
    decision = admit("create_report/r.json", document_with(["az://uploads/a.csv", uri]), scopes=["az://uploads/"])

    assert rejection_code(decision) == "input_not_allowed"
    assert isinstance(decision, Rejection)
    assert repr(uri) in decision.error.message and "BlobURIs[1]" in decision.error.message
    assert "INPUT_SCOPES" in decision.error.message


def test_a_folder_scope_admits_its_folder_only() -> None:
    scopes = ["az://uploads/", "az://parsed/portfolios/"]

    assert isinstance(admit("create_audit/r.json", document_with(["az://parsed/portfolios/a.csv"]), scopes=scopes),
                      RunRequest)
    assert rejection_code(
        admit("create_audit/r.json", document_with(["az://parsed/portfolios-old/a.csv"]), scopes=scopes)
    ) == "input_not_allowed"


def test_a_portfolio_upload_is_admitted_from_its_properties_without_reading_it() -> None:
    upload = UploadInMemory(container="uploads", name="parse_portfolio/p.csv", content=PORTFOLIO)

    decision = admit_upload(upload, max_bytes=1024, input_scopes=SCOPES, policy=RunPolicy(), now=NOW)

    assert isinstance(decision, RunRequest) and decision.source.size == len(PORTFOLIO)
    assert upload.asked == ["properties"]


@pytest.mark.parametrize("name", ["parse_portfolio/big.csv", "create_report/big.json"])
def test_an_oversized_upload_is_refused_from_its_size_alone_without_reading_it(name: str) -> None:
    upload = UploadInMemory(container="uploads", name=name, content=b"x" * 2048)

    decision = admit_upload(upload, max_bytes=1024, input_scopes=SCOPES, policy=RunPolicy(), now=NOW)

    assert rejection_code(decision) == "upload_too_large"
    assert upload.asked == ["properties"]


def test_a_request_document_over_128_kib_is_refused_without_reading_it() -> None:
    upload = UploadInMemory(container="uploads", name="create_report/big.json", content=b" " * 200_000)

    decision = admit_upload(upload, max_bytes=1024 * 1024, input_scopes=SCOPES, policy=RunPolicy(), now=NOW)

    assert rejection_code(decision) == "request_too_large"
    assert upload.asked == ["properties"]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("parse_portfolio/back/../slash.csv", "'..'"),  # Azurite's name for a raw PUT of back\..\slash.csv
        ("parse_portfolio/./a.csv", "'.' segment"),
        ("parse_portfolio//a.csv", "empty"),
        ("parse_portfolio/back\\slash.csv", "backslash"),
    ],
)
def test_a_name_storage_clients_resolve_elsewhere_is_refused_without_asking_storage(name: str, words: str) -> None:
    upload = UploadInMemory(container="uploads", name=name, content=PORTFOLIO)

    decision = admit_upload(upload, max_bytes=1024, input_scopes=SCOPES, policy=RunPolicy(), now=NOW)

    assert rejection_code(decision) == "invalid_name"
    assert isinstance(decision, Rejection) and words in decision.error.message and decision.etag is None
    assert upload.asked == []


@pytest.mark.parametrize("depth", [33, 300, 990, 5000, 60_000])
def test_a_request_nested_deeper_than_the_limit_is_refused_before_it_is_parsed(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    content = ('{"BlobURIs": ["az://uploads/a.csv"], "x": ' + nested + "}").encode()

    decision = admit("create_report/deep.json", content)

    assert rejection_code(decision) == "request_too_deep"
    assert isinstance(decision, Rejection) and "more than 32 deep" in decision.error.message


def test_a_request_nested_up_to_the_limit_and_brackets_inside_strings_are_admitted() -> None:
    nested = "[" * 31 + "]" * 31  # the document's own object is the 32nd level
    content = ('{"BlobURIs": ["az://uploads/a.csv"], "x": ' + nested + ', "y": "' + "[{\\\"" * 500 + '"}').encode()

    assert isinstance(admit("create_report/r.json", content), RunRequest)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("NaN", "NaN is no JSON value"),
        ("Infinity", "Infinity is no JSON value"),
        ("-Infinity", "-Infinity is no JSON value"),
        ("1e400", "the number 1e400 is too large"),
        ("1" * 400, "an integer of 400 digits is too large"),
        ("1" * 5000, "an integer of 5000 digits is too large"),
    ],
)
def test_a_number_go_and_r_cannot_read_is_refused_naming_it(value: str, words: str) -> None:
    content = ('{"BlobURIs": ["az://uploads/a.csv"], "Weight": ' + value + "}").encode()

    decision = admit("create_dashboard/r.json", content)

    assert rejection_code(decision) == "invalid_request"
    assert isinstance(decision, Rejection) and words in decision.error.message


def test_a_request_document_with_a_utf8_byte_order_mark_is_read_without_it() -> None:
    document = {"AnalysisID": "analysis.1", "BlobURIs": ["az://uploads/a.csv"]}

    request = admit("create_report/windows.json", b"\xef\xbb\xbf" + json.dumps(document).encode())

    assert isinstance(request, RunRequest) and request.pacta_request() == document


def test_a_request_with_a_lone_surrogate_escape_is_refused() -> None:
    decision = admit("create_report/r.json", b'{"BlobURIs": ["az://uploads/a.csv"], "PortfolioName": "a\\ud800b"}')

    assert rejection_code(decision) == "invalid_request"
    assert isinstance(decision, Rejection) and "surrogate" in decision.error.message


def test_a_request_that_grows_past_128_kib_as_the_jobs_variable_is_refused() -> None:
    # 40,000 characters of e-acute: 80 KB of UTF-8, 240 KB once JSON escapes them as \u00e9.
    decision = admit("create_report/r.json", document_with(["az://uploads/a.csv"], PortfolioName="é" * 200,
                                                            Notes="é" * 40_000))

    assert rejection_code(decision) == "request_too_large"
    assert isinstance(decision, Rejection) and "CREATE_REPORT_REQUEST" in decision.error.message


def test_a_blob_uri_longer_than_any_blob_name_is_refused_without_being_echoed() -> None:
    uri = "az://uploads/" + "a" * 100_000

    decision = admit("create_report/r.json", document_with([uri]))

    assert rejection_code(decision) == "invalid_request"
    assert isinstance(decision, Rejection) and len(decision.error.message) < 300
