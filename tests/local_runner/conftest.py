"""Docker fixtures: the engine, a small image with Python and a shell, and containers cleaned up per test.

The backend tests need only `python3` and `/bin/sh` in the image, not the runner. The image is the
first of: `DOCKER_TEST_IMAGE`; the local base image `scripts/build-images.sh` makes; `python:3.11-slim`
when the engine has it; else one built here in a few seconds from the interpreter running the
tests (its binary, shared libraries and standard library, plus `/bin/sh`), as the machines this
project is tested on have no registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound, NotFound

from orchestrations.backends import JobBackend
from orchestrations.contracts import ExecutionRef, JobStatus
from tests.conftest import missing_service, wait_for


def wait_until_ended(backend: JobBackend, ref: ExecutionRef) -> JobStatus:
    """Poll a backend until the execution has ended; its final status."""
    return wait_for(lambda: (status := backend.status(ref)).has_ended and status, what=f"{ref} to end")  # type: ignore[no-any-return]


# Scopes the containers of one test: the backend puts it on every container, cleanup removes by it.
TEST_SCOPE_LABEL = "pacta-runner.test-scope"
IMAGE_CANDIDATES = ("pacta-runner-base:bookworm", "python:3.11-slim")
HOST_PYTHON_IMAGE = "pacta-testjob"
# Parts of the standard library no test job imports; leaving them out halves the image.
_STDLIB_SKIP = {"test", "site-packages", "dist-packages", "__pycache__", "idlelib", "tkinter", "turtledemo",
                "ensurepip", "lib2to3", "pydoc_data", "unittest", "distutils"}


@pytest.fixture(scope="session")
def job_image(docker_client: docker.DockerClient) -> str:
    """An image with `python3` and `/bin/sh`, for jobs given as commands."""
    override = os.environ.get("DOCKER_TEST_IMAGE")
    if override:
        return override
    for candidate in IMAGE_CANDIDATES:
        with contextlib.suppress(ImageNotFound):
            docker_client.images.get(candidate)
            return candidate
    return _host_python_image(docker_client)


@pytest.fixture
def test_scope(unique_name: str, docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """Labels for this test's containers; every container carrying them is removed afterwards."""
    labels = {TEST_SCOPE_LABEL: unique_name}
    try:
        yield labels
    finally:
        scoped = docker_client.containers.list(all=True, filters={"label": f"{TEST_SCOPE_LABEL}={unique_name}"})
        for container in scoped:
            with contextlib.suppress(NotFound):
                container.remove(force=True, v=True)


def _host_python_image(client: docker.DockerClient) -> str:
    """Import a rootfs holding this interpreter at its own path, its libraries and /bin/sh (Linux only)."""
    executable = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    shell = Path("/bin/sh").resolve()
    if not sys.platform.startswith("linux") or shutil.which("ldd") is None or not shell.exists():
        missing_service(
            "no image with Python for the docker tests: set DOCKER_TEST_IMAGE, or build "
            f"{IMAGE_CANDIDATES[0]} with scripts/build-images.sh"
        )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(f"{executable}:{executable.stat().st_size}:{stdlib}:{shell}".encode()).hexdigest()[:12]
    tag = f"{HOST_PYTHON_IMAGE}:py{version}-{digest}"
    with contextlib.suppress(ImageNotFound):
        client.images.get(tag)
        return tag
    dynload = [path for path in stdlib.rglob("*.so") if not _skipped(path.relative_to(stdlib))]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(str(executable), arcname=str(executable).lstrip("/"))
        tar.add(str(shell), arcname="bin/sh")
        for library in _shared_libraries([executable, shell, *dynload]):
            tar.add(str(library.resolve()), arcname=str(library).lstrip("/"))
        tar.add(
            str(stdlib),
            arcname=str(stdlib).lstrip("/"),
            filter=lambda info: None if _skipped(Path(info.name).relative_to(str(stdlib).lstrip("/"))) else info,
        )
        for link in ("usr/bin/python3", "usr/bin/python"):
            if f"/{link}" != str(executable):
                info = tarfile.TarInfo(link)
                info.type, info.linkname = tarfile.SYMTYPE, str(executable)
                tar.addfile(info)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    repository, _, image_tag = tag.partition(":")
    client.api.import_image_from_data(
        archive.getvalue(),
        repository=repository,
        tag=image_tag,
        changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin", "ENV LANG=C.UTF-8", 'CMD ["python3"]'],
    )
    return tag


def _skipped(relative: Path) -> bool:
    return any(part in _STDLIB_SKIP or part.startswith("config-") for part in relative.parts)


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for binary in binaries:
        listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        found.update(Path(path) for path in re.findall(r"(/\S+)", listing))
    return {path for path in found if path.exists()}
