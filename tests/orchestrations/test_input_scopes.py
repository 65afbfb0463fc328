"""INPUT_SCOPES: which containers and folders a request may read, checked at start-up."""

from __future__ import annotations

import pytest

from orchestrations.errors import ConfigurationError
from orchestrations.settings import load_settings


@pytest.fixture(autouse=True)
def storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("AZURE_FUNCTIONS_ENVIRONMENT", "Development")
    monkeypatch.delenv("INPUT_SCOPES", raising=False)


def start_up_error(monkeypatch: pytest.MonkeyPatch, value: str) -> str:
    monkeypatch.setenv("INPUT_SCOPES", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    return caught.value.message


def test_unset_requests_read_the_uploads_container_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOADS_CONTAINER", "portfolios")

    assert load_settings().input_scopes == ["az://portfolios/"]


def test_containers_and_folders_can_be_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPUT_SCOPES", '["az://uploads/parse_portfolio/", "az://uploads/create_report/", "az://ppp/a/"]')

    assert load_settings().input_scopes == ["az://uploads/parse_portfolio/", "az://uploads/create_report/", "az://ppp/a/"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('["uploads/"]', "'uploads/' does not start with az://"),
        ('["az://uploads"]', "must end with '/'"),
        ('["az://uploads/", "az://parsed/portfolio"]', "'az://parsed/portfolio' must end with '/'"),
        ('["az://Uploads/"]', "does not name a container"),
        ('["az://uploads/", "az://xyz/../"]', "'..' folder"),
        ('["az://uploads/", "az://azure-webjobs-secrets/"]', "container of the Functions host itself"),
        ("[]", "[] lets no run read its inputs"),
        ('["az://reports/"]', "covers az://uploads/parse_portfolio/"),
        ("az://uploads/", 'is not JSON; write a list such as ["az://uploads/"'),
    ],
)
def test_a_bad_input_scopes_setting_stops_the_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    message = start_up_error(monkeypatch, value)

    assert "INPUT_SCOPES" in message and words in message
