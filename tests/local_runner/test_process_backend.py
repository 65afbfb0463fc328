"""The process backend runs real subprocesses: small `python -c` jobs stand in for the runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from local_runner import process_backend
from local_runner.process_backend import (
    VANISHED,
    ProcessJobBackend,
    create_backend,
)
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, TaskType
from orchestrations.errors import BackendError, ExecutionNotFoundError
from orchestrations.settings import AppSettings
from tests.conftest import wait_for
from tests.local_runner.conftest import wait_until_ended

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
WAIT_SECONDS = 30.0

SpecFactory = Callable[..., JobSpec]


@pytest.fixture
def backend(tmp_path: Path) -> ProcessJobBackend:
    return ProcessJobBackend(tmp_path / "runs", project_root=PROJECT_ROOT)


@pytest.fixture
def make_spec() -> SpecFactory:
    """Builds a JobSpec whose job is the given Python code, under a fresh run id."""

    def make(code: str, *, env: dict[str, str] | None = None, run_id: str | None = None) -> JobSpec:
        return JobSpec(
            run_id=run_id or f"run-{uuid.uuid4().hex[:12]}",
            task_type=TaskType.PARSE_PORTFOLIO,
            image="unused-by-the-process-backend",
            command=[sys.executable, "-c", textwrap.dedent(code)],
            env=env or {},
            deadline_seconds=600,
        )

    return make


def run_dir(backend: ProcessJobBackend, ref: ExecutionRef) -> Path:
    return backend.work_dir / ref.name


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_job_that_exits_zero_succeeds_with_its_output_in_the_log_tail(backend, make_spec):
    ref = backend.start(
        make_spec("print('hello from the job')\nimport sys; print('on stderr', file=sys.stderr)")
    )

    status = wait_until_ended(backend, ref)

    assert ref == ExecutionRef(backend="process", name=ref.name)
    assert status.state is JobState.SUCCEEDED
    assert status.exit_code == 0
    assert status.log_tail is not None
    assert "hello from the job" in status.log_tail
    assert "on stderr" in status.log_tail
    assert "hello from the job" in backend.logs(ref)


def test_a_job_that_exits_three_fails_with_exit_code_three(backend, make_spec):
    ref = backend.start(make_spec("import sys; print('bad input'); sys.exit(3)"))

    status = wait_until_ended(backend, ref)

    assert status.state is JobState.FAILED
    assert status.exit_code == 3
    assert status.detail == "exited with code 3"
    assert status.log_tail == "bad input"


def test_a_job_killed_by_sigkill_fails_with_137_and_names_the_signal(backend, make_spec):
    ref = backend.start(make_spec("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))

    status = wait_until_ended(backend, ref)

    assert status.state is JobState.FAILED
    assert status.exit_code == 137
    assert status.detail is not None
    assert status.detail.startswith("killed by signal 9")


def test_the_log_tail_keeps_the_last_forty_lines(backend, make_spec):
    ref = backend.start(make_spec("for i in range(100): print(f'line {i}')"))

    status = wait_until_ended(backend, ref)

    assert status.log_tail is not None
    lines = status.log_tail.splitlines()
    assert len(lines) == 40
    assert lines[0] == "line 60"
    assert lines[-1] == "line 99"
    assert backend.logs(ref).count("\n") == 100


def test_a_command_that_does_not_exist_fails_with_127_and_says_why(backend, make_spec):
    spec = make_spec("").model_copy(update={"command": ["/nonexistent/runner"]})
    ref = backend.start(spec)

    status = wait_until_ended(backend, ref)

    assert status.exit_code == 127
    assert status.log_tail is not None
    assert "/nonexistent/runner" in status.log_tail


def test_the_job_gets_its_spec_env_and_not_the_callers_environment(backend, make_spec, monkeypatch):
    monkeypatch.setenv("HOST_ONLY_SECRET", "must-not-leak")
    code = """
        import json, os, sys
        print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "path": sys.path}))
    """
    ref = backend.start(make_spec(code, env={"TASK_TYPE": "parse_portfolio"}))

    assert wait_until_ended(backend, ref).state is JobState.SUCCEEDED
    seen = json.loads(backend.logs(ref))
    assert seen["env"]["TASK_TYPE"] == "parse_portfolio"
    assert "HOST_ONLY_SECRET" not in seen["env"]
    assert seen["env"]["PYTHONPATH"] == str(PROJECT_ROOT)
    assert seen["cwd"] == str(PROJECT_ROOT)


def test_stopping_a_sleeping_job_ends_it_as_stopped_and_its_process_is_gone(
    backend, make_spec, tmp_path
):
    pid_file = tmp_path / "job.pid"
    code = f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(600)
    """
    ref = backend.start(make_spec(code))
    wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", what="the job to record its pid")
    assert backend.status(ref).state is JobState.RUNNING

    status = backend.stop(ref)

    assert status.state is JobState.FAILED
    assert status.exit_code == 143
    assert status.detail == "stopped"
    assert process_gone(int(pid_file.read_text()))
    assert backend.status(ref) == status


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path, make_spec):
    backend = ProcessJobBackend(
        tmp_path / "runs", project_root=PROJECT_ROOT, stop_grace_seconds=0.5
    )
    ready = tmp_path / "ready"
    code = f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(ready)!r}, "w").close()
        time.sleep(600)
    """
    ref = backend.start(make_spec(code))
    wait_for(ready.exists, what="the job to ignore SIGTERM")

    status = backend.stop(ref)

    assert status.state is JobState.FAILED
    assert status.exit_code == 137
    assert status.detail == "stopped"


def test_stopping_an_ended_run_returns_its_status(backend, make_spec):
    ref = backend.start(make_spec("print('done')"))
    ended = wait_until_ended(backend, ref)

    assert backend.stop(ref) == ended
    assert ended.state is JobState.SUCCEEDED


def test_starting_a_run_twice_starts_one_process(backend, make_spec, tmp_path):
    ran = tmp_path / "ran.txt"
    spec = make_spec(f"open({str(ran)!r}, 'a').write('ran\\n')")

    first = backend.start(spec)
    pid_before = (run_dir(backend, first) / "pid").read_text()
    second = backend.start(spec)
    wait_until_ended(backend, first)
    third = backend.start(spec)

    assert first == second == third
    assert (run_dir(backend, first) / "pid").read_text() == pid_before
    assert ran.read_text() == "ran\n"


def test_concurrent_starts_of_one_run_start_one_process(tmp_path, make_spec):
    ran = tmp_path / "ran.txt"
    spec = make_spec(f"open({str(ran)!r}, 'a').write('ran\\n')")
    backends = [ProcessJobBackend(tmp_path / "runs", project_root=PROJECT_ROOT) for _ in range(8)]
    barrier = threading.Barrier(len(backends))
    refs: list[ExecutionRef] = []

    def start(backend: ProcessJobBackend) -> None:
        barrier.wait()
        refs.append(backend.start(spec))

    threads = [threading.Thread(target=start, args=(backend,)) for backend in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert len(refs) == len(backends)
    assert len(set(refs)) == 1
    wait_until_ended(backends[0], refs[0])
    assert ran.read_text() == "ran\n"


STARTER = """
import os, signal, sys
from pathlib import Path
from local_runner.process_backend import ProcessJobBackend
from orchestrations.contracts import JobSpec
backend = ProcessJobBackend(Path(sys.argv[1]), project_root=Path(sys.argv[2]))
backend.start(JobSpec.model_validate_json(sys.argv[3]))
os.kill(os.getpid(), signal.SIGKILL)  # the host dies mid-run
"""


def start_from_a_host_that_dies(spec: JobSpec, work_dir: Path) -> ExecutionRef:
    """Start the run from another Python process, which is then SIGKILLed."""
    starter = subprocess.run(
        [sys.executable, "-c", STARTER, str(work_dir), str(PROJECT_ROOT), spec.model_dump_json()],
        cwd=PROJECT_ROOT,
        timeout=WAIT_SECONDS,
    )
    assert starter.returncode == -signal.SIGKILL
    return ExecutionRef(backend="process", name=spec.run_id)


def test_a_run_outlives_the_process_that_started_it(tmp_path, make_spec):
    go = tmp_path / "go"
    code = f"""
        import os, time
        deadline = time.monotonic() + 60
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
        print("finished after the starter died")
    """
    work_dir = tmp_path / "runs"

    ref = start_from_a_host_that_dies(make_spec(code), work_dir)
    backend = ProcessJobBackend(work_dir, project_root=PROJECT_ROOT)

    assert backend.status(ref).state is JobState.RUNNING
    go.touch()
    status = wait_until_ended(backend, ref)
    assert status.state is JobState.SUCCEEDED
    assert status.log_tail == "finished after the starter died"


def test_an_orphaned_run_killed_without_an_exit_code_has_vanished(tmp_path, make_spec):
    work_dir = tmp_path / "runs"
    ref = start_from_a_host_that_dies(make_spec("import time; time.sleep(600)"), work_dir)
    backend = ProcessJobBackend(work_dir, project_root=PROJECT_ROOT)
    pid = int((work_dir / ref.name / "pid").read_text())
    assert backend.status(ref).state is JobState.RUNNING

    # Killed with its job; nobody may reap it (PID 1 here is not always an init that does).
    os.killpg(pid, signal.SIGKILL)
    status = wait_until_ended(backend, ref)

    assert status.exit_code is None
    assert status.detail == VANISHED


def test_a_run_whose_processes_were_killed_without_an_exit_code_has_vanished(backend, make_spec):
    ref = backend.start(make_spec("import time; time.sleep(600)"))
    pid = int((run_dir(backend, ref) / "pid").read_text())

    os.killpg(pid, signal.SIGKILL)  # the supervisor and its job, as a reboot would
    status = wait_until_ended(backend, ref)

    assert status.state is JobState.FAILED
    assert status.exit_code is None
    assert status.detail == VANISHED


def test_a_running_job_is_known_running_from_its_own_process_without_looking_through_every_process(
    backend, make_spec, monkeypatch
):
    ref = backend.start(make_spec("import time; time.sleep(600)"))

    def every_process(pgid: int) -> list[str]:
        raise AssertionError("looked through every process for a group whose leader runs")

    with monkeypatch.context() as patch:
        patch.setattr(process_backend, "_group_member_states", every_process)
        assert backend.status(ref).state is JobState.RUNNING
    # Only the status look is held to that: stopping waits until the whole group has ended, which needs the scan
    # once the leader is gone.
    backend.stop(ref)


def test_a_job_whose_first_process_was_killed_runs_while_another_of_its_processes_lives(
    backend, make_spec, tmp_path
):
    child_pid = tmp_path / "child.pid"
    code = f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(child_pid)!r}, "w").write(str(child.pid))
        time.sleep(600)
    """
    ref = backend.start(make_spec(code))
    wait_for(lambda: child_pid.exists() and child_pid.read_text() != "", what="the job to start its child")
    leader = int((run_dir(backend, ref) / "pid").read_text())

    os.kill(leader, signal.SIGKILL)  # the group's leader alone; the rest of the group lives on
    wait_for(lambda: process_gone(leader), what="the leader to end")

    assert backend.status(ref).state is JobState.RUNNING
    os.killpg(leader, signal.SIGKILL)
    assert wait_until_ended(backend, ref).detail == VANISHED


def test_spec_json_keeps_the_spec_but_not_its_secrets(backend, make_spec):
    connection = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0;BlobEndpoint=x"
    spec = make_spec(
        "pass",
        env={
            "TASK_TYPE": "parse_portfolio",
            "RUNNER_CALLBACK_TOKEN": "tok-0123456789abcdef",
            "RUNNER_STORAGE_CONNECTION_STRING": connection,
            "SOME_SETTING": connection,
            "INPUT_URL": "https://a.blob.core.windows.net/c/b?sv=2024&sig=abc",
        },
    )

    ref = backend.start(spec)
    text = (run_dir(backend, ref) / "spec.json").read_text()

    saved = json.loads(text)
    assert saved["run_id"] == spec.run_id
    assert saved["env"]["TASK_TYPE"] == "parse_portfolio"
    for secret in ("tok-0123456789abcdef", "c2VjcmV0", "sig=abc"):
        assert secret not in text
    wait_until_ended(backend, ref)


def test_status_of_an_unknown_run_raises_execution_not_found(backend):
    ref = ExecutionRef(backend="process", name="no-such-run")

    with pytest.raises(ExecutionNotFoundError) as raised:
        backend.status(ref)

    assert raised.value.code == "execution_not_found"
    assert str(backend.work_dir) in raised.value.message
    with pytest.raises(ExecutionNotFoundError):
        backend.stop(ref)
    with pytest.raises(ExecutionNotFoundError):
        backend.logs(ref)


def test_a_ref_of_another_backend_is_refused_with_the_expected_form(backend):
    with pytest.raises(BackendError, match="process:<run_id>"):
        backend.status(ExecutionRef(backend="docker", name="abc"))


def test_a_run_id_that_is_not_a_directory_name_is_refused(backend, make_spec):
    with pytest.raises(BackendError, match="cannot name a directory"):
        backend.start(make_spec("pass", run_id="../escape"))


def test_create_backend_puts_a_relative_work_dir_under_the_project_root(monkeypatch):
    monkeypatch.delenv("PROCESS_BACKEND_WORK_DIR", raising=False)
    settings = AppSettings(AzureWebJobsStorage="UseDevelopmentStorage=true", RUNNER_BACKEND="process")

    backend = create_backend(settings)

    assert backend.name == "process"
    assert backend.work_dir == PROJECT_ROOT / ".local" / "process-runs"
