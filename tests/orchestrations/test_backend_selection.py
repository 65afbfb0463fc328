"""Which job backend runs the jobs: RUNNER_BACKEND, else docker or process under the emulator, else aca."""

from __future__ import annotations

import pytest

from orchestrations.backends import select_backend_name
from orchestrations.settings import AppSettings, BackendName

EMULATOR = {"AZURE_FUNCTIONS_ENVIRONMENT": "Development"}


# An account's connection string: outside the emulator the runner gets its https account URLs.
STORAGE = "DefaultEndpointsProtocol=https;AccountName=pactaprod;AccountKey=a2V5;EndpointSuffix=core.windows.net"


def settings(**values: str) -> AppSettings:
    return AppSettings.model_validate({"AzureWebJobsStorage": STORAGE, **values})


def test_the_setting_wins() -> None:
    assert select_backend_name(settings(RUNNER_BACKEND="process", **EMULATOR)) is BackendName.PROCESS


def test_outside_the_emulator_runs_go_to_container_apps() -> None:
    assert select_backend_name(settings()) is BackendName.ACA


def test_emulator_without_an_engine_falls_back_to_process_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")

    assert select_backend_name(settings(**EMULATOR)) is BackendName.PROCESS
    assert "no Docker engine answers at tcp://127.0.0.1:9" in caplog.text


@pytest.mark.docker
@pytest.mark.usefixtures("docker_client")
def test_emulator_with_an_engine_but_no_runner_image_falls_back_and_names_make_images(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert select_backend_name(settings(RUNNER_IMAGE="pacta-runner:never-built", **EMULATOR)) is BackendName.PROCESS
    assert "make images" in caplog.text


@pytest.mark.docker
def test_emulator_with_an_engine_and_the_image_uses_docker(runner_image: str, caplog: pytest.LogCaptureFixture) -> None:
    chosen = select_backend_name(settings(RUNNER_IMAGE=runner_image, **EMULATOR))

    assert chosen is BackendName.DOCKER, caplog.text
