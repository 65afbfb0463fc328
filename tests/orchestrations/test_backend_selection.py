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


@pytest.mark.parametrize(("cores", "cap"), [(1, 1), (2, 2), (8, 8), (64, 10)])
def test_unset_a_local_backend_runs_as_many_jobs_as_the_machine_has_cores_at_most_ten(
    monkeypatch: pytest.MonkeyPatch, cores: int, cap: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))

    assert settings(RUNNER_BACKEND="process", **EMULATOR).max_concurrent_runs == cap
    assert settings(RUNNER_BACKEND="docker", **EMULATOR).max_concurrent_runs == cap


def test_unset_container_apps_runs_ten_jobs_at_once_and_a_set_cap_holds_on_every_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})

    assert settings().max_concurrent_runs == 10
    assert settings(RUNNER_BACKEND="process", MAX_CONCURRENT_RUNS="7", **EMULATOR).max_concurrent_runs == 7
    assert settings(MAX_CONCURRENT_RUNS="25").max_concurrent_runs == 25


def test_where_the_platform_has_no_cpu_affinity_the_local_cap_counts_the_machines_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr("os.sched_getaffinity", raising=False)  # macOS and Windows have none
    monkeypatch.setattr("os.cpu_count", lambda: 6)

    assert settings(RUNNER_BACKEND="process", **EMULATOR).max_concurrent_runs == 6
