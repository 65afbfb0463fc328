"""The `docker` job backend: each run in a container on the local Docker engine, as in Container Apps.

Selected with `RUNNER_BACKEND=docker`, or under the emulator when `unavailable_reason()` finds an engine
and the runner image answers (`DOCKER_HOST` honoured, else the default socket). Like PACTA's
`dockertask`, it starts the runner image with the JobSpec's environment, entrypoint and arguments and
keeps finished containers for `docker logs`; unlike it, it limits CPU and memory as Container Apps does
and uses host networking (`DOCKER_NETWORK`) so the runner reaches Azurite on 127.0.0.1.

Every container is named `pacta-run-<run_id>` (the name makes `start` idempotent) and labelled
`pacta-runner.managed=true`, `pacta-runner.checkout` (this machine and checkout), `runner.run-id` and
`runner.task-type`. Clean-up only ever touches containers carrying the project label and this checkout's:
`DOCKER_KEEP_FINISHED` finished containers are kept; older ones are removed in the background after a run
starts, at most once per `PRUNE_INTERVAL_SECONDS` (never one that finished in the last
`PRUNE_MIN_AGE_SECONDS`, whose run the orchestrator may still be reading), and `python -m local_runner prune`
(`make down`) removes them all. A start never waits for a prune, whatever the number of finished containers.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from local_runner.job_output import LOG_MAX_BYTES, LOG_TAIL_LINES, capped_log, describe_exit, log_tail
from orchestrations.backends import REMOTE_END_LOOKS
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, JobStatus
from orchestrations.errors import BackendError, ConfigurationError, ExecutionNotFoundError
from orchestrations.settings import AppSettings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PROJECT_LABEL = "pacta-runner.managed"
# Which machine and checkout started a container: clean-up (`make down`, `prune`, the retention) removes only its
# own, never another checkout's or another machine's on the same engine (DOCKER_HOST may be shared).
CHECKOUT_LABEL = "pacta-runner.checkout"
RUN_ID_LABEL = "runner.run-id"
TASK_TYPE_LABEL = "runner.task-type"
CONTAINER_PREFIX = "pacta-run-"
DEFAULT_ENGINE = "unix:///var/run/docker.sock"

# An engine that answers at all answers a ping within milliseconds; start-up must not hang on one that does not.
PING_TIMEOUT_SECONDS = 2.0
# Creating and starting a container takes about 0.1 s here; this bounds an engine under load.
API_TIMEOUT_SECONDS = 60.0
# What `docker stop` gives a container by default; the runner needs it to send its failure event.
STOP_GRACE_SECONDS = 10.0
# A container is created and started within a second; one still `created` after this was left by an
# interrupted start (a host killed between the two calls) and will never run.
START_WAIT_SECONDS = 30.0
# The orchestrator reads a finished container's status within a check interval or two (60 s each by
# default): automatic pruning leaves younger ones alone so a burst of short runs cannot hide a result.
PRUNE_MIN_AGE_SECONDS = 15 * 60.0
# Automatic pruning runs in the background, at most once per interval: listing the finished containers costs
# about 0.15 ms each on the engine, which a burst of starts should not pay once per start.
PRUNE_INTERVAL_SECONDS = 30.0
POLL_SECONDS = 0.05

INTERRUPTED_START = "the container was created but never started (its start was interrupted)"
STOPPED_BEFORE_START = "stopped before it started"

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RUNNING_STATES = frozenset({"running", "restarting", "paused"})


def engine_address() -> str:
    """The engine the SDK talks to: `DOCKER_HOST`, or the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


def engine_available() -> bool:
    """Whether a Docker engine answers a ping within `PING_TIMEOUT_SECONDS` (False on any error)."""
    try:
        client = docker.from_env(timeout=PING_TIMEOUT_SECONDS)
    except Exception:  # any failure to connect means "not available", which is the answer asked for
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def unavailable_reason(settings: AppSettings) -> str | None:
    """Why runs cannot use Docker here (no engine, or no runner image), or None when they can."""
    if not engine_available():
        return f"no Docker engine answers at {engine_address()}"
    client = docker.from_env(timeout=PING_TIMEOUT_SECONDS)
    try:
        client.images.get(settings.runner_image)
    except docker.errors.ImageNotFound:
        return f"the engine has no image {settings.runner_image} (build it with `make images`)"
    except Exception as exc:
        return f"the engine could not be asked for image {settings.runner_image}: {_reason(exc)}"
    finally:
        client.close()
    return None


def connect(timeout: float = API_TIMEOUT_SECONDS) -> docker.DockerClient:
    """A client for the engine at `engine_address()`, which has answered a ping; ConfigurationError if none does."""
    address = f"DOCKER_HOST={os.environ['DOCKER_HOST']}" if os.environ.get("DOCKER_HOST") else (
        f"{DEFAULT_ENGINE} (DOCKER_HOST is unset)"
    )
    try:
        probe = docker.from_env(timeout=PING_TIMEOUT_SECONDS)
        try:
            probe.ping()
        finally:
            probe.close()
        return docker.from_env(timeout=timeout)
    except Exception as exc:
        raise ConfigurationError(
            "docker_unavailable",
            f"RUNNER_BACKEND=docker needs a Docker engine, and none answers at {address} "
            f"({_reason(exc)}). Start one with `make up` (it runs scripts/docker-engine.sh), point DOCKER_HOST "
            "at a running engine, or set RUNNER_BACKEND=process.",
        ) from None


def create_backend(settings: AppSettings) -> DockerJobBackend:
    """The factory `RUNNER_BACKEND=docker` loads; fails at start-up when no engine answers."""
    data_dir = None
    if settings.docker_data_dir:
        data_dir = Path(settings.docker_data_dir)
        if not data_dir.is_absolute():
            data_dir = PROJECT_ROOT / data_dir
        if not data_dir.is_dir():
            raise ConfigurationError(
                "invalid_settings",
                f"DOCKER_DATA_DIR={settings.docker_data_dir} is not a directory ({data_dir}): create it, or unset "
                "DOCKER_DATA_DIR to run without the data bind.",
            )
    return DockerJobBackend(
        connect(),
        network=settings.docker_network,
        data_dir=data_dir,
        data_mount=settings.docker_data_mount,
        retention=settings.docker_keep_finished,
        labels=checkout_labels(),
    )


def prune_containers(
    client: docker.DockerClient,
    keep: int,
    *,
    labels: Mapping[str, str] | None = None,
    min_age_seconds: float = 0.0,
    finish_times: dict[str, float] | None = None,
    now: float | None = None,
) -> list[str]:
    """Remove this project's finished containers beyond the newest `keep`; return their names.

    Only containers labelled `pacta-runner.managed=true` (and every label in `labels`) are considered,
    only finished ones (exited, dead, or created more than `START_WAIT_SECONDS` ago and never started)
    are removed, and none that finished less than `min_age_seconds` ago. Running containers and anyone
    else's are never touched.

    One list call answers most of it: a container created within `min_age_seconds` also finished within it,
    so it is kept without being inspected; older ones are inspected once for their finish time, which
    `finish_times` (container id -> POSIX time, kept by the caller between calls) remembers. Ages are
    judged at `now` (POSIX time; the clock's by default).
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, not {keep}")
    if min_age_seconds < 0:
        raise ValueError(f"min_age_seconds must be >= 0, not {min_age_seconds}")
    selectors = [f"{PROJECT_LABEL}=true", *(f"{key}={value}" for key, value in (labels or {}).items())]
    listed = client.api.containers(all=True, filters={"label": selectors, "status": ["exited", "dead", "created"]})
    known = finish_times if finish_times is not None else {}
    now = time.time() if now is None else now
    recent = 0  # finished within min_age_seconds, so newer than any container removable now
    candidates: list[tuple[float, str, str]] = []  # (finished at, id, name)
    for entry in listed:
        container_id, state = entry["Id"], entry.get("State")
        created = float(entry.get("Created") or 0)
        name = (entry.get("Names") or [container_id])[0].lstrip("/")
        if state == "created":
            if now - created > START_WAIT_SECONDS:  # an interrupted or failed start: it ended when made
                candidates.append((created, container_id, name))
        elif now - created < min_age_seconds:
            recent += 1
        else:
            finished = known.get(container_id)
            if finished is None:
                try:
                    finished = _finished_time(client.api.inspect_container(container_id))
                except NotFound:
                    continue  # removed meanwhile
                known[container_id] = finished
            candidates.append((finished, container_id, name))
    for gone in known.keys() - {entry["Id"] for entry in listed}:
        del known[gone]
    candidates.sort(reverse=True)
    removed = []
    for newer, (finished, container_id, name) in enumerate(candidates, start=recent):
        if newer < keep or now - finished < min_age_seconds:
            continue
        try:
            client.api.remove_container(container_id, v=True)
        except NotFound:
            continue  # removed meanwhile (a concurrent prune)
        except APIError as exc:
            if exc.status_code == 409:
                continue  # a removal is already in progress
            raise
        known.pop(container_id, None)
        removed.append(name)
    if removed:
        logger.info("Removed %d finished container(s): %s", len(removed), ", ".join(removed))
    return removed


def checkout_labels() -> dict[str, str]:
    """The label naming this checkout (a digest of this machine's name and the checkout's path) on its containers."""
    origin = f"{socket.gethostname()}:{PROJECT_ROOT}"
    return {CHECKOUT_LABEL: hashlib.sha256(origin.encode()).hexdigest()[:16]}


def prune(keep: int = 0) -> list[str]:
    """Remove this checkout's finished containers on the engine at DOCKER_HOST beyond the newest `keep`."""
    client = connect()
    try:
        return prune_containers(client, keep, labels=checkout_labels())
    finally:
        client.close()


class DockerJobBackend:
    """Runs each JobSpec as a container: `spec.image`, `spec.env`, entrypoint `spec.command` (the image's
    own when empty), command `spec.args`, `spec.cpu` CPUs and `spec.memory` of memory without swap.

    `labels` are put on every container besides the standard ones, and `prune` only removes
    containers that carry them too (the app's carry `checkout_labels()`; tests scope their containers
    this way). Safe to call from several threads and processes: the engine refuses a second container
    with the same name, which is what makes `start` idempotent.
    """

    name = "docker"
    end_looks = REMOTE_END_LOOKS  # each look is an inspect by the engine

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        network: str = "host",
        data_dir: Path | None = None,
        data_mount: str = "/mnt/workflow-data",
        retention: int = 20,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
        labels: Mapping[str, str] | None = None,
        prune_min_age_seconds: float = PRUNE_MIN_AGE_SECONDS,
        prune_interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        engine: str | None = None,
    ) -> None:
        if stop_grace_seconds < 0:
            raise ValueError(f"stop_grace_seconds must be >= 0, not {stop_grace_seconds}")
        if retention < 0:
            raise ValueError(f"retention must be >= 0, not {retention}")
        if prune_min_age_seconds < 0:
            raise ValueError(f"prune_min_age_seconds must be >= 0, not {prune_min_age_seconds}")
        if prune_interval_seconds < 0:
            raise ValueError(f"prune_interval_seconds must be >= 0, not {prune_interval_seconds}")
        if not data_mount.startswith("/"):
            raise ValueError(f"data_mount must be an absolute path, not {data_mount!r}")
        self._client = client
        self._network = network
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._data_mount = data_mount
        self._retention = retention
        self._stop_grace_seconds = stop_grace_seconds
        self._labels = dict(labels or {})
        self._prune_min_age_seconds = prune_min_age_seconds
        self._prune_interval_seconds = prune_interval_seconds
        self._engine = engine or engine_address()
        # Containers this backend stopped, so their status says `stopped` (until the host restarts).
        self._stopped: set[str] = set()
        self._lock = threading.Lock()
        # The background prune: begun at most once per interval; one prune at a time; the finish times read.
        self._prune_thread: threading.Thread | None = None
        self._prune_began = -math.inf
        self._prune_lock = threading.Lock()
        self._finish_times: dict[str, float] = {}

    # --- the JobBackend protocol ---

    def start(self, spec: JobSpec) -> ExecutionRef:
        """Create and start the run's container, or return the ref of the one that exists for this run."""
        if not _RUN_ID.match(spec.run_id):
            raise BackendError(
                "invalid_run_id",
                f"run id {spec.run_id!r} cannot name a container: use letters, digits, '.', '_', '-'.",
            )
        name = CONTAINER_PREFIX + spec.run_id
        ref = self._ref(name)
        if self._run_container_exists(spec.run_id, name):
            logger.info("Run %s was started already: %s", spec.run_id, ref, extra=_ids(ref))
            return ref
        began = time.monotonic()
        container = self._create(spec, name)
        if container is None:
            self._await_concurrent_create(spec.run_id, name)
            logger.info("Run %s was started concurrently: %s", spec.run_id, ref, extra=_ids(ref))
            return ref
        try:
            container.start()
        except APIError as exc:
            container.reload()
            if not container.attrs["State"].get("Error"):
                raise BackendError(
                    "container_start_failed",
                    f"The docker engine {self._engine} did not start {name}: {_reason(exc)}. "
                    f"Check the engine (`docker info`), then retry.",
                ) from exc
            # The engine refused to run it (a bad entrypoint): the container records why, and status says so.
            logger.warning("%s could not start: %s", ref, container.attrs["State"]["Error"], extra=_ids(ref))
            return ref
        logger.info(
            "Started %s: image %s, network %s, in %.2f s",
            ref,
            spec.image,
            self._network,
            time.monotonic() - began,
            extra=_ids(ref),
        )
        logger.debug("%s runs entrypoint %s with args %s", ref, spec.command or "(image's)", spec.args, extra=_ids(ref))
        self._begin_prune()
        return ref

    def status(self, ref: ExecutionRef) -> JobStatus:
        """Running while the container runs; then its exit code, OOM kill or start error, and log tail."""
        container = self._container(ref)
        return self._status(container)

    def stop(self, ref: ExecutionRef) -> JobStatus:
        """SIGTERM the container, SIGKILL it after the grace period; return the final status."""
        container = self._container(ref)
        current = self._status(container)
        if current.has_ended:
            return current
        with self._lock:
            self._stopped.add(container.name)
        if container.status == "created":
            # Never started, so there is nothing to signal; what it would have run does not matter now.
            return JobStatus(state=JobState.FAILED, detail=STOPPED_BEFORE_START)
        logger.info("Stopping %s (grace %ss)", ref, self._stop_grace_seconds, extra=_ids(ref))
        try:
            container.stop(timeout=math.ceil(self._stop_grace_seconds))  # the engine takes whole seconds
        except NotFound:
            raise ExecutionNotFoundError(str(ref), where=self._where) from None
        container.reload()
        return self._status(container)

    def logs(self, ref: ExecutionRef) -> str:
        """The container's stdout and stderr; only the last MiB of a longer log."""
        container = self._container(ref)
        kept = bytearray()
        omitted = 0
        for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
            kept += chunk
            if len(kept) > 2 * LOG_MAX_BYTES:
                omitted += len(kept) - LOG_MAX_BYTES
                del kept[: len(kept) - LOG_MAX_BYTES]
        return capped_log(bytes(kept), omitted=omitted, source=f"`docker logs {container.name}`")

    # --- housekeeping ---

    def prune(self, keep: int | None = None) -> list[str]:
        """Remove this backend's finished containers beyond the newest `keep` (default: its retention), now."""
        with self._prune_lock:
            return prune_containers(
                self._client,
                self._retention if keep is None else keep,
                labels=self._labels,
                finish_times=self._finish_times,
            )

    def wait_for_prune(self, timeout: float | None = None) -> None:
        """Wait for the background prune a start began, if one is under way (tests, orderly shut-downs)."""
        thread = self._prune_thread
        if thread is not None:
            thread.join(timeout)

    # --- starting ---

    def _create(self, spec: JobSpec, name: str) -> Container | None:
        """The new container, or None when one of that name exists already (a concurrent start)."""
        volumes = {}
        if self._data_dir is not None:
            volumes[str(self._data_dir)] = {"bind": self._data_mount, "mode": "ro"}
        try:
            return self._client.containers.create(
                spec.image,
                name=name,
                entrypoint=list(spec.command) or None,
                command=list(spec.args) or None,
                environment=dict(spec.env),
                labels={
                    **self._labels,
                    PROJECT_LABEL: "true",
                    RUN_ID_LABEL: spec.run_id,
                    TASK_TYPE_LABEL: spec.task_type.value,
                },
                network_mode=self._network,
                nano_cpus=int(spec.cpu * 1e9),
                mem_limit=spec.memory_bytes,
                memswap_limit=spec.memory_bytes,  # the same: no swap, so the job is OOM-killed as in Container Apps
                volumes=volumes,
                detach=True,
                auto_remove=False,  # kept for `docker logs`; pruned beyond DOCKER_KEEP_FINISHED
            )
        except ImageNotFound:
            raise BackendError(
                "image_not_found",
                f"Image {spec.image} is not on the docker engine {self._engine}: build it with `make images` "
                "(or set RUNNER_IMAGE to an image the engine has).",
                permanent=True,
            ) from None
        except APIError as exc:
            if exc.status_code == 409:
                return None
            raise BackendError(
                "container_create_failed",
                f"The docker engine {self._engine} could not create {name} from {spec.image}: {_reason(exc)}.",
            ) from exc

    def _await_concurrent_create(self, run_id: str, name: str) -> None:
        """After a name conflict: wait for the other start's container to appear, and check it is this run's.

        The engine reserves the name before the container can be listed or inspected.
        """
        deadline = time.monotonic() + START_WAIT_SECONDS
        while not self._run_container_exists(run_id, name):
            if time.monotonic() >= deadline:
                raise BackendError(
                    "container_start_failed",
                    f"Another start of run {run_id} holds the name {name} on the docker engine {self._engine}, "
                    f"but its container did not appear within {START_WAIT_SECONDS:.0f} s: retry.",
                )
            time.sleep(POLL_SECONDS)

    def _run_container_exists(self, run_id: str, name: str) -> bool:
        """Whether the run's container exists: looked up by name, one call whatever the number of containers.

        A container of that name that this project did not start for this run is an error naming the fix.
        """
        try:
            labels = self._client.containers.get(name).labels
        except NotFound:
            return False
        if labels.get(PROJECT_LABEL) != "true" or labels.get(RUN_ID_LABEL) != run_id:
            raise BackendError(
                "container_name_taken",
                f"A container named {name} exists on the docker engine {self._engine} but was not started by this "
                f"project for run {run_id}: remove it (`docker rm {name}`) and retry.",
            )
        return True

    def _begin_prune(self) -> None:
        """Prune in a background thread, unless one is under way or began within the interval."""
        with self._lock:
            now = time.monotonic()
            running = self._prune_thread is not None and self._prune_thread.is_alive()
            if running or now - self._prune_began < self._prune_interval_seconds:
                return
            self._prune_began = now
            # A daemon: a prune cut short by the process's exit leaves containers for the next one, nothing worse.
            self._prune_thread = threading.Thread(target=self._prune_quietly, name="docker-prune", daemon=True)
            self._prune_thread.start()

    def _prune_quietly(self) -> None:
        try:
            with self._prune_lock:
                prune_containers(
                    self._client,
                    self._retention,
                    labels=self._labels,
                    min_age_seconds=self._prune_min_age_seconds,
                    finish_times=self._finish_times,
                )
        except DockerException as exc:
            logger.warning("Could not prune finished containers: %s", _reason(exc))

    # --- finding and reading containers ---

    @property
    def _where(self) -> str:
        return f"docker engine {self._engine}"

    def _ref(self, container_name: str) -> ExecutionRef:
        return ExecutionRef(backend=self.name, name=container_name)

    def _container(self, ref: ExecutionRef) -> Container:
        if ref.backend != self.name:
            raise BackendError(
                "wrong_backend", f"{ref} is not a docker backend ref; expected 'docker:{CONTAINER_PREFIX}<run_id>'."
            )
        try:
            container = self._client.containers.get(ref.name)
        except NotFound:
            raise ExecutionNotFoundError(str(ref), where=self._where) from None
        if container.labels.get(PROJECT_LABEL) != "true":
            # Someone else's container: this backend neither reports nor stops it.
            raise ExecutionNotFoundError(str(ref), where=self._where)
        return container

    def _status(self, container: Container) -> JobStatus:
        state = container.attrs["State"]
        status = state.get("Status", "")
        if status == "created":
            if state.get("Error"):
                return JobStatus(
                    state=JobState.FAILED,
                    exit_code=state.get("ExitCode") or None,
                    detail=f"the container could not start: {state['Error']}",
                )
            if _age_seconds(container.attrs.get("Created")) > START_WAIT_SECONDS:
                return JobStatus(state=JobState.FAILED, detail=INTERRUPTED_START)
            return JobStatus(state=JobState.RUNNING, detail=f"container {container.short_id} created")
        if status in _RUNNING_STATES:
            return JobStatus(state=JobState.RUNNING, detail=f"container {container.short_id} {status}")
        exit_code = int(state.get("ExitCode", -1))
        with self._lock:
            stopped = container.name in self._stopped
        if state.get("OOMKilled"):
            detail = f"OOMKilled: the job used more than its memory limit of {_memory_limit(container)}"
        elif status == "dead":
            detail = f"the container is dead (the engine could not remove or stop it): exit code {exit_code}"
        else:
            detail = describe_exit(exit_code, stopped=stopped)
        try:
            tail = log_tail(container.logs(stdout=True, stderr=True, tail=LOG_TAIL_LINES))
        except APIError:
            tail = None  # removed since we looked (a prune, `docker rm`): the status stands without it
        return JobStatus(
            state=JobState.SUCCEEDED if exit_code == 0 else JobState.FAILED,
            exit_code=exit_code,
            detail=detail,
            log_tail=tail,
        )


def _finished_time(attrs: Mapping[str, Any]) -> float:
    """When an exited or dead container ended, as POSIX time (0 when the engine never recorded it)."""
    when = _parse_time(attrs.get("State", {}).get("FinishedAt"))
    return 0.0 if when is None else when.timestamp()


def _parse_time(text: Any) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, `Z`); its zero time `0001-01-01T00:00:00Z` is None."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _age_seconds(created: Any) -> float:
    when = _parse_time(created)
    return 0.0 if when is None else (datetime.now(UTC) - when).total_seconds()


def _memory_limit(container: Container) -> str:
    limit = int(container.attrs.get("HostConfig", {}).get("Memory") or 0)
    if limit <= 0:
        return "(none set)"
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2)):
        if limit % size == 0:
            return f"{limit // size}{unit}"
    return f"{limit / 1024**2:.1f}Mi"


def _reason(exc: BaseException) -> str:
    """An SDK error in one line: the engine's explanation when it gave one."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip().replace("\n", " ")
    return text[:300]


def _ids(ref: ExecutionRef) -> dict[str, str]:
    run_id = ref.name.removeprefix(CONTAINER_PREFIX)
    return {"run_id": run_id, "execution_ref": str(ref)}
