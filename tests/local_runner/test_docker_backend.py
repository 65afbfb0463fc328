"""The docker backend against the real engine: small `sh` and `python3` jobs stand in for the runner.

A job's command becomes the container's entrypoint, as the runner's would. Its process is PID 1 in
the container, which the kernel shields from signals it has no handler for: SIGTERM from `stop` is
ignored unless the job handles it (hence the SIGKILL after the grace), and a job cannot SIGKILL
itself, so the SIGKILL test kills a child of the shell and lets the shell exit with its status.
"""

from __future__ import annotations

import logging
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from local_runner import docker_backend
from local_runner.azurite import free_port
from local_runner.docker_backend import (
    CHECKOUT_LABEL,
    CONTAINER_PREFIX,
    PROJECT_LABEL,
    RUN_ID_LABEL,
    STOPPED_BEFORE_START,
    TASK_TYPE_LABEL,
    DockerJobBackend,
    checkout_labels,
    engine_available,
    prune,
    prune_containers,
)
from local_runner.docker_backend import create_backend as create_docker_backend
from local_runner.job_output import LOG_MAX_BYTES
from orchestrations.backends import JobBackend, create_backend
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, JobStatus, TaskType
from orchestrations.errors import BackendError, ConfigurationError, ExecutionNotFoundError
from orchestrations.settings import AppSettings
from tests.conftest import wait_for
from tests.local_runner.conftest import TEST_SCOPE_LABEL, wait_until_ended

pytestmark = pytest.mark.docker

WAIT_SECONDS = 60.0
STOP_GRACE_SECONDS = 2.0
SECRET = "s3cret-token-" + uuid.uuid4().hex

SpecFactory = Callable[..., JobSpec]
BackendFactory = Callable[..., DockerJobBackend]


@pytest.fixture
def make_backend(docker_client: docker.DockerClient, test_scope: dict[str, str]) -> BackendFactory:
    """A backend whose containers carry this test's scope label (removed after the test)."""

    def make(**options: object) -> DockerJobBackend:
        options.setdefault("stop_grace_seconds", STOP_GRACE_SECONDS)
        return DockerJobBackend(docker_client, labels=test_scope, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def backend(make_backend: BackendFactory) -> DockerJobBackend:
    return make_backend()


@pytest.fixture
def make_spec(job_image: str) -> SpecFactory:
    """A JobSpec running `command` in the test image, under a fresh run id."""

    def make(*command: str, args: list[str] | None = None, env: dict[str, str] | None = None,
             run_id: str | None = None, memory: str = "256Mi", cpu: float = 0.5, image: str = job_image) -> JobSpec:
        return JobSpec(
            run_id=run_id or f"run-{uuid.uuid4().hex[:12]}",
            task_type=TaskType.PARSE_PORTFOLIO,
            image=image,
            command=list(command),
            args=args or [],
            env=env or {},
            cpu=cpu,
            memory=memory,
            deadline_seconds=600,
        )

    return make


def python_job(code: str) -> list[str]:
    return ["python3", "-c", textwrap.dedent(code)]


def run_to_end(backend: DockerJobBackend, spec: JobSpec) -> JobStatus:
    return wait_until_ended(backend, backend.start(spec))


def wait_for_output(backend: DockerJobBackend, ref: ExecutionRef, text: str) -> None:
    wait_for(lambda: text in backend.logs(ref), what=f"{ref} to print {text!r}")


# --- how jobs end ---


def test_a_job_that_prints_and_exits_zero_succeeds_with_its_output_in_the_log_tail(backend, make_spec):
    status = run_to_end(backend, make_spec("sh", "-c", "echo hello from the job; echo on stderr >&2"))

    assert status.state is JobState.SUCCEEDED
    assert status.exit_code == 0
    assert status.detail == "exited with code 0"
    assert status.log_tail is not None
    assert "hello from the job" in status.log_tail
    assert "on stderr" in status.log_tail


def test_a_job_that_exits_three_fails_with_exit_code_three(backend, make_spec):
    status = run_to_end(backend, make_spec("sh", "-c", "echo bad input; exit 3"))

    assert status.state is JobState.FAILED
    assert status.exit_code == 3
    assert status.detail == "exited with code 3"
    assert status.log_tail == "bad input"


def test_the_log_tail_keeps_the_last_forty_lines(backend, make_spec):
    status = run_to_end(backend, make_spec(*python_job("for i in range(100): print(f'line {i}')")))

    assert status.log_tail is not None
    lines = status.log_tail.splitlines()
    assert len(lines) == 40
    assert lines[0] == "line 60"
    assert lines[-1] == "line 99"


def test_a_job_killed_by_sigkill_fails_with_137_and_the_signal_named(backend, make_spec):
    kill_itself = "import os, signal; print('about to die', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    status = run_to_end(backend, make_spec("sh", "-c", f'python3 -c "{kill_itself}"; exit $?'))

    assert status.state is JobState.FAILED
    assert status.exit_code == 137
    assert status.detail == "killed by signal 9 (SIGKILL)"
    assert status.log_tail is not None
    assert "about to die" in status.log_tail


def test_a_job_over_its_memory_limit_is_oom_killed_and_the_detail_says_so(backend, make_spec):
    spec = make_spec(*python_job("data = b'x' * (512 * 1024 * 1024); print('survived', len(data))"), memory="64Mi")

    status = run_to_end(backend, spec)

    assert status.state is JobState.FAILED
    assert status.exit_code == 137
    assert status.detail == "OOMKilled: the job used more than its memory limit of 64Mi"


def test_an_entrypoint_the_engine_cannot_run_fails_with_the_engines_reason(backend, make_spec):
    ref = backend.start(make_spec("/no/such/program"))

    status = backend.status(ref)

    assert status.state is JobState.FAILED
    assert status.exit_code == 127
    assert status.detail is not None
    assert status.detail.startswith("the container could not start:")
    assert "/no/such/program" in status.detail


# --- stopping ---


def test_stop_kills_a_job_that_ignores_sigterm_once_the_grace_period_is_over(backend, make_spec, docker_client):
    ref = backend.start(make_spec(*python_job("import time; print('sleeping', flush=True); time.sleep(300)")))
    wait_for_output(backend, ref, "sleeping")

    began = time.monotonic()
    status = backend.stop(ref)
    elapsed = time.monotonic() - began

    assert STOP_GRACE_SECONDS <= elapsed < STOP_GRACE_SECONDS + 5
    assert status.state is JobState.FAILED
    assert status.exit_code == 137
    assert status.detail == "stopped"
    assert docker_client.containers.get(ref.name).status == "exited"
    assert backend.status(ref).detail == "stopped"


def test_stop_sends_sigterm_first_so_a_job_that_handles_it_ends_at_once(make_backend, make_spec):
    backend = make_backend(stop_grace_seconds=30)
    ref = backend.start(make_spec(*python_job("""
        import signal, sys, time
        def finish(signum, frame):
            print("got SIGTERM, sending the failure event", flush=True)
            sys.exit(143)
        signal.signal(signal.SIGTERM, finish)
        print("ready", flush=True)
        time.sleep(300)
    """)))
    wait_for_output(backend, ref, "ready")

    began = time.monotonic()
    status = backend.stop(ref)

    assert time.monotonic() - began < 10
    assert status.exit_code == 143
    assert status.detail == "stopped"
    assert status.log_tail is not None
    assert "got SIGTERM" in status.log_tail


def test_stopping_an_ended_job_returns_its_final_status(backend, make_spec):
    ref = backend.start(make_spec("sh", "-c", "echo done"))
    ended = wait_until_ended(backend, ref)

    assert backend.stop(ref) == ended
    assert backend.stop(ref).state is JobState.SUCCEEDED


def test_stopping_a_container_that_never_started_reports_it_stopped_before_it_started(
    backend, make_spec, docker_client, test_scope, job_image
):
    name = f"{CONTAINER_PREFIX}never-started-{uuid.uuid4().hex[:8]}"
    docker_client.containers.create(job_image, name=name, labels={**test_scope, PROJECT_LABEL: "true"})
    ref = ExecutionRef(backend="docker", name=name)

    status = backend.stop(ref)

    assert status.state is JobState.FAILED
    assert status.detail == STOPPED_BEFORE_START


# --- what the container gets ---


def test_every_container_is_named_after_its_run_and_carries_the_run_labels(backend, make_spec, docker_client):
    spec = make_spec("sh", "-c", "true")

    ref = backend.start(spec)

    assert ref == ExecutionRef(backend="docker", name=f"pacta-run-{spec.run_id}")
    labels = docker_client.containers.get(ref.name).labels
    assert labels[RUN_ID_LABEL] == spec.run_id
    assert labels[TASK_TYPE_LABEL] == "parse_portfolio"
    assert labels[PROJECT_LABEL] == "true"


def test_the_container_gets_the_specs_cpu_and_memory_limits_without_swap_on_the_host_network(
    backend, make_spec, docker_client
):
    ref = backend.start(make_spec("sh", "-c", "true", cpu=0.5, memory="256Mi"))

    host_config = docker_client.containers.get(ref.name).attrs["HostConfig"]
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == 256 * 1024 * 1024
    assert host_config["MemorySwap"] == 256 * 1024 * 1024
    assert host_config["NetworkMode"] == "host"
    assert host_config["AutoRemove"] is False


def test_env_command_and_args_reach_the_container_and_env_values_are_never_logged(backend, make_spec, caplog):
    spec = make_spec(
        "sh", "-c", 'echo "$GREETING $1 $2"; [ "$RUNNER_CALLBACK_TOKEN" = "$EXPECTED" ] && echo token arrived', "job",
        args=["first", "second"],
        env={"GREETING": "hello", "RUNNER_CALLBACK_TOKEN": SECRET, "EXPECTED": SECRET},
    )
    caplog.set_level(logging.DEBUG)

    ref = backend.start(spec)
    status = wait_until_ended(backend, ref)
    backend.stop(ref)

    assert status.state is JobState.SUCCEEDED
    assert status.log_tail == "hello first second\ntoken arrived"
    assert caplog.records, "the backend logs its work"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in str(vars(record))


def test_a_spec_without_a_command_runs_the_images_entrypoint_with_the_args(backend, make_spec):
    spec = make_spec(args=["python3", "-c", "print('run as the image command')"])

    status = run_to_end(backend, spec)

    assert status.state is JobState.SUCCEEDED
    assert status.log_tail == "run as the image command"


def test_host_networking_lets_a_job_reach_a_server_on_the_test_machines_loopback(backend, make_spec):
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(WAIT_SECONDS)
        port = server.getsockname()[1]

        def accept_one() -> None:
            connection, _ = server.accept()
            with connection:
                received.append(connection.makefile("rb").readline())

        listener = threading.Thread(target=accept_one, daemon=True)
        listener.start()
        status = run_to_end(backend, make_spec(*python_job(f"""
            import socket
            with socket.create_connection(("127.0.0.1", {port}), timeout=10) as connection:
                connection.sendall(b"hello from the container\\n")
        """)))
        listener.join(timeout=WAIT_SECONDS)

    assert status.state is JobState.SUCCEEDED, status.log_tail
    assert received == [b"hello from the container\n"]


def test_the_data_dir_is_bound_read_only_at_the_data_mount(make_backend, make_spec, tmp_path: Path):
    data_dir = tmp_path / "workflow-data"
    data_dir.mkdir()
    (data_dir / "benchmark.txt").write_text("benchmark data\n")
    backend = make_backend(data_dir=data_dir, data_mount="/mnt/workflow-data")

    status = run_to_end(backend, make_spec(*python_job("""
        import errno, sys
        print(open("/mnt/workflow-data/benchmark.txt").read().strip())
        try:
            open("/mnt/workflow-data/written-by-the-job.txt", "w")
        except OSError as exc:
            print("read-only" if exc.errno == errno.EROFS else f"unexpected {exc}")
        else:
            sys.exit("the data mount is writable")
    """)))

    assert status.state is JobState.SUCCEEDED, status.log_tail
    assert status.log_tail == "benchmark data\nread-only"
    assert sorted(path.name for path in data_dir.iterdir()) == ["benchmark.txt"]


# --- idempotent start ---


def test_starting_one_run_twice_gives_one_container(backend, make_spec, docker_client):
    spec = make_spec(*python_job("import time; time.sleep(30)"))

    first = backend.start(spec)
    second = backend.start(spec)

    assert first == second
    assert len(docker_client.containers.list(all=True, filters={"label": f"{RUN_ID_LABEL}={spec.run_id}"})) == 1


def test_concurrent_starts_of_one_run_give_one_container(backend, make_spec, docker_client):
    spec = make_spec(*python_job("import time; time.sleep(30)"))
    barrier = threading.Barrier(4)
    refs: list[ExecutionRef] = []

    def start() -> None:
        barrier.wait()
        refs.append(backend.start(spec))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS)

    assert len(refs) == 4
    assert len(set(refs)) == 1
    containers = docker_client.containers.list(all=True, filters={"label": f"{RUN_ID_LABEL}={spec.run_id}"})
    assert len(containers) == 1
    assert containers[0].status == "running"


# --- errors ---


def test_a_container_of_someone_else_holding_the_runs_name_fails_start_naming_docker_rm(
    backend, make_spec, docker_client, test_scope, job_image
):
    spec = make_spec("sh", "-c", "true")
    docker_client.api.create_container(
        job_image, "true", name=f"{CONTAINER_PREFIX}{spec.run_id}", labels=test_scope,
        host_config={"NetworkMode": "host"},
    )

    with pytest.raises(BackendError) as raised:
        backend.start(spec)

    assert raised.value.code == "container_name_taken"
    assert f"docker rm {CONTAINER_PREFIX}{spec.run_id}" in raised.value.message


def test_a_missing_image_fails_start_naming_the_image_and_make_images(backend, make_spec):
    image = f"pacta-no-such-image:{uuid.uuid4().hex[:8]}"

    with pytest.raises(BackendError) as raised:
        backend.start(make_spec("sh", "-c", "true", image=image))

    assert raised.value.code == "image_not_found" and raised.value.permanent  # no retry builds an image
    assert image in raised.value.message
    assert "make images" in raised.value.message


def test_status_of_an_unknown_container_raises_not_found_naming_the_engine(backend):
    ref = ExecutionRef(backend="docker", name=f"{CONTAINER_PREFIX}never-created-{uuid.uuid4().hex[:8]}")

    with pytest.raises(ExecutionNotFoundError) as raised:
        backend.status(ref)

    assert str(ref) in raised.value.message
    assert "docker engine" in raised.value.message


def test_a_container_this_project_did_not_start_is_neither_reported_nor_stopped(
    backend, docker_client, test_scope, job_image
):
    foreign = docker_client.containers.run(
        job_image, ["python3", "-c", "import time; time.sleep(60)"], labels=test_scope, network_mode="host",
        detach=True,
    )
    ref = ExecutionRef(backend="docker", name=foreign.name)

    with pytest.raises(ExecutionNotFoundError):
        backend.status(ref)
    with pytest.raises(ExecutionNotFoundError):
        backend.stop(ref)
    foreign.reload()
    assert foreign.status == "running"


def test_a_ref_of_another_backend_is_refused_naming_the_expected_form(backend):
    with pytest.raises(BackendError) as raised:
        backend.status(ExecutionRef(backend="process", name="run-1"))

    assert raised.value.code == "wrong_backend"
    assert "docker:pacta-run-<run_id>" in raised.value.message


# --- logs ---


def test_logs_return_the_containers_stdout_and_stderr(backend, make_spec):
    ref = backend.start(make_spec("sh", "-c", "echo to stdout; echo to stderr >&2"))
    wait_until_ended(backend, ref)

    # Two pipes: the engine may read either line first.
    assert sorted(backend.logs(ref).splitlines(keepends=True)) == ["to stderr\n", "to stdout\n"]


def test_logs_keep_the_last_mebibyte_of_a_longer_output(backend, make_spec):
    ref = backend.start(make_spec(*python_job("""
        import sys
        for i in range(40000):
            sys.stdout.write(f"{i:08d} " + "x" * 91 + "\\n")
        print("the last line")
    """)))
    wait_until_ended(backend, ref)

    text = backend.logs(ref)

    first_line, rest = text.split("\n", 1)
    assert first_line.startswith("[")
    assert f"earlier bytes of `docker logs {ref.name}` omitted]" in first_line
    assert len(rest.encode()) == LOG_MAX_BYTES
    assert rest.endswith("the last line\n")


# --- pruning ---


def finished_containers(backend: DockerJobBackend, make_spec: SpecFactory, count: int) -> list[str]:
    """Run `count` quick jobs one after another; their container names, oldest first."""
    names = []
    for index in range(count):
        ref = backend.start(make_spec("sh", "-c", f"echo job {index}"))
        wait_until_ended(backend, ref)
        names.append(ref.name)
    return names


def test_prune_keeps_the_newest_of_ours_and_leaves_running_and_foreign_containers_alone(
    backend, make_spec, docker_client, test_scope, job_image
):
    oldest, older, newest = finished_containers(backend, make_spec, 3)
    running = backend.start(make_spec(*python_job("import time; time.sleep(60)"))).name
    foreign = docker_client.containers.run(
        job_image, ["sh", "-c", "true"], labels={**test_scope, RUN_ID_LABEL: "not-ours"}, network_mode="host",
        detach=True,
    )
    foreign.wait(timeout=WAIT_SECONDS)

    removed = backend.prune(keep=1)

    assert sorted(removed) == sorted([oldest, older])
    remaining = {container.name for container in docker_client.containers.list(
        all=True, filters={"label": f"{TEST_SCOPE_LABEL}={test_scope[TEST_SCOPE_LABEL]}"}
    )}
    assert remaining == {newest, running, foreign.name}


def test_prune_keeps_containers_younger_than_the_min_age_beyond_the_newest_kept(
    backend, make_spec, docker_client, test_scope
):
    finished_containers(backend, make_spec, 3)

    removed = prune_containers(docker_client, 1, labels=test_scope, min_age_seconds=600)

    assert removed == []


def test_prune_removes_containers_older_than_the_min_age_beyond_the_newest_kept(
    backend, make_spec, docker_client, test_scope
):
    oldest, older, _ = finished_containers(backend, make_spec, 3)
    an_hour_later = time.time() + 3600

    removed = prune_containers(docker_client, 1, labels=test_scope, min_age_seconds=600, now=an_hour_later)

    assert sorted(removed) == sorted([oldest, older])


def test_a_start_removes_finished_containers_beyond_the_retention_in_the_background(
    make_backend, make_spec, docker_client
):
    backend = make_backend(retention=1, prune_min_age_seconds=0, prune_interval_seconds=0)
    oldest, newest = finished_containers(backend, make_spec, 2)
    backend.wait_for_prune(timeout=WAIT_SECONDS)

    backend.start(make_spec(*python_job("import time; time.sleep(60)")))
    backend.wait_for_prune(timeout=WAIT_SECONDS)

    names = {container.name for container in docker_client.containers.list(all=True)}
    assert oldest not in names
    assert newest in names


def test_a_start_keeps_containers_that_finished_moments_ago(make_backend, make_spec, docker_client):
    backend = make_backend(retention=0, prune_interval_seconds=0)
    finished = finished_containers(backend, make_spec, 2)

    backend.start(make_spec(*python_job("import time; time.sleep(60)")))
    backend.wait_for_prune(timeout=WAIT_SECONDS)

    names = {container.name for container in docker_client.containers.list(all=True)}
    assert set(finished) <= names


def test_a_start_returns_while_the_prune_it_began_is_still_under_way(make_backend, make_spec, monkeypatch):
    began, release = threading.Event(), threading.Event()

    def slow_prune(*args: object, **kwargs: object) -> list[str]:
        began.set()
        release.wait(WAIT_SECONDS)
        return []

    monkeypatch.setattr(docker_backend, "prune_containers", slow_prune)
    backend = make_backend(prune_interval_seconds=0)
    try:
        backend.start(make_spec("sh", "-c", "true"))

        assert began.wait(WAIT_SECONDS)
        assert not release.is_set()  # the start returned, and the prune still waits
    finally:
        release.set()
        backend.wait_for_prune(timeout=WAIT_SECONDS)


def test_a_burst_of_starts_prunes_once_per_interval(make_backend, make_spec, monkeypatch):
    prunes: list[float] = []

    def counted_prune(*args: object, **kwargs: object) -> list[str]:
        prunes.append(time.time())
        return []

    monkeypatch.setattr(docker_backend, "prune_containers", counted_prune)
    backend = make_backend(prune_interval_seconds=3600)

    for _ in range(3):
        backend.start(make_spec("sh", "-c", "true"))
        backend.wait_for_prune(timeout=WAIT_SECONDS)

    assert len(prunes) == 1


def test_prune_leaves_a_container_whose_start_is_under_way(backend, docker_client, test_scope, job_image):
    created = docker_client.api.create_container(
        job_image, "true", labels={**test_scope, PROJECT_LABEL: "true"}, host_config={"NetworkMode": "host"}
    )

    removed = backend.prune(keep=0)

    assert removed == []
    docker_client.containers.get(created["Id"])  # still there, to be started


def test_prune_removes_a_container_whose_start_was_interrupted_long_ago(
    backend, docker_client, test_scope, job_image, monkeypatch
):
    monkeypatch.setattr(docker_backend, "START_WAIT_SECONDS", -1.0)  # "long ago" is now
    created = docker_client.api.create_container(
        job_image, "true", labels={**test_scope, PROJECT_LABEL: "true"}, host_config={"NetworkMode": "host"}
    )
    name = docker_client.containers.get(created["Id"]).name

    removed = backend.prune(keep=0)

    assert removed == [name]


# --- whose containers clean-up touches ---


def test_a_starts_prune_never_removes_another_checkouts_finished_containers(
    docker_client, make_spec, test_scope, job_image
):
    ours = DockerJobBackend(
        docker_client, labels={**test_scope, CHECKOUT_LABEL: "checkout-a"}, retention=0, prune_min_age_seconds=0,
        prune_interval_seconds=0,
    )
    theirs = docker_client.containers.run(
        job_image, ["sh", "-c", "true"], network_mode="host", detach=True,
        labels={**test_scope, PROJECT_LABEL: "true", CHECKOUT_LABEL: "checkout-b", RUN_ID_LABEL: "their-run"},
    )
    theirs.wait(timeout=WAIT_SECONDS)
    [our_old_job] = finished_containers(ours, make_spec, 1)
    ours.wait_for_prune(timeout=WAIT_SECONDS)

    ours.start(make_spec("sh", "-c", "true"))
    ours.wait_for_prune(timeout=WAIT_SECONDS)

    names = {container.name for container in docker_client.containers.list(all=True)}
    assert our_old_job not in names
    assert theirs.name in names


def test_make_downs_prune_removes_this_checkouts_containers_and_no_other_checkouts(
    docker_client, make_spec, test_scope, tmp_path, monkeypatch
):
    """Two checkouts share one engine (a clone beside this one, CI in a temporary folder): clean-up is per checkout."""
    monkeypatch.setattr(docker_backend, "PROJECT_ROOT", tmp_path)  # this test's own checkout, not the real one's
    ours = DockerJobBackend(docker_client, labels={**test_scope, **checkout_labels()}, prune_min_age_seconds=0)
    theirs = DockerJobBackend(docker_client, labels={**test_scope, CHECKOUT_LABEL: "another-checkout"})
    [our_job] = finished_containers(ours, make_spec, 1)
    [their_job] = finished_containers(theirs, make_spec, 1)

    removed = prune(keep=0)

    assert removed == [our_job]
    docker_client.containers.get(their_job)  # still there


def test_the_same_checkout_path_on_another_machine_is_another_checkout(monkeypatch):
    here = checkout_labels()
    monkeypatch.setattr(docker_backend.socket, "gethostname", lambda: "another-machine")

    assert checkout_labels() != here


# --- engine discovery and start-up ---


def test_engine_available_is_true_for_the_running_engine(docker_client):
    assert engine_available() is True


@pytest.mark.parametrize("bogus", ["tcp://127.0.0.1:{port}", "unix:///nonexistent/docker.sock"])
def test_engine_available_is_false_for_a_bogus_docker_host(monkeypatch, bogus):
    monkeypatch.setenv("DOCKER_HOST", bogus.format(port=free_port()))

    began = time.monotonic()
    assert engine_available() is False
    assert time.monotonic() - began < 5


def settings_for(**values: object) -> AppSettings:
    return AppSettings.model_validate({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **values})


def test_runner_backend_docker_without_an_engine_fails_at_start_up_naming_docker_host(monkeypatch):
    bogus = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DOCKER_HOST", bogus)

    with pytest.raises(ConfigurationError) as raised:
        create_backend(settings_for(RUNNER_BACKEND="docker"))

    message = raised.value.message
    assert "RUNNER_BACKEND=docker" in message
    assert f"DOCKER_HOST={bogus}" in message
    assert "make up" in message
    assert "scripts/docker-engine.sh" in message


def test_a_docker_data_dir_that_is_not_a_directory_fails_at_start_up_naming_the_setting(tmp_path):
    missing = tmp_path / "no-such-data"

    with pytest.raises(ConfigurationError) as raised:
        create_docker_backend(settings_for(RUNNER_BACKEND="docker", DOCKER_DATA_DIR=str(missing)))

    assert f"DOCKER_DATA_DIR={missing}" in raised.value.message


def test_runner_backend_docker_with_an_engine_builds_the_docker_backend(docker_client):
    backend = create_backend(settings_for(RUNNER_BACKEND="docker", DOCKER_NETWORK="host", DOCKER_KEEP_FINISHED=3))

    assert isinstance(backend, JobBackend)
    assert backend.name == "docker"


def test_the_apps_docker_backend_labels_every_container_with_its_checkout(docker_client, make_spec):
    backend = create_docker_backend(settings_for(RUNNER_BACKEND="docker", DOCKER_NETWORK="host"))
    ref = backend.start(make_spec("sh", "-c", "true"))
    try:
        labels = docker_client.containers.get(ref.name).labels
        assert labels[CHECKOUT_LABEL] == checkout_labels()[CHECKOUT_LABEL] and labels[PROJECT_LABEL] == "true"
    finally:
        docker_client.containers.get(ref.name).remove(force=True)
