"""Runner image figures: build times cold, after a code change and with nothing changed; sizes.

    .venv/bin/python bench/image_build.py            (`make bench` runs it, after `make images`)
    .venv/bin/python bench/image_build.py --cold     (also the base image from nothing, about 40 s more)

Every build happens in a temporary copy of the build inputs (what .dockerignore lets in, the Dockerfile and
scripts/build-images.sh) under the tags pacta-runner:bench and pacta-runner-base:bench, deleted at the end: your
checkout, pacta-runner:local and pacta-runner-base:bookworm are never touched. Figures are wall seconds, medians
over the stated number of runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = "scripts/build-images.sh"
BASE_IMAGE = os.environ.get("BASE_IMAGE", "pacta-runner-base:bookworm")
RUNNER_IMAGE = os.environ.get("RUNNER_IMAGE", "pacta-runner:local")
BENCH_IMAGE = "pacta-runner:bench"
BENCH_BASE_IMAGE = "pacta-runner-base:bench"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def image_id(tag: str) -> str | None:
    result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag))


def timed_build(root: Path, *args: str, env: dict[str, str] | None = None) -> list[tuple[float, str]]:
    """One `scripts/build-images.sh` call in `root`: each output line with the seconds since the start, then
    ("", total). Its output is shown only when it fails."""
    env = {**os.environ, "RUNNER_IMAGE": BENCH_IMAGE, "BASE_IMAGE": BASE_IMAGE, **(env or {})}
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", BUILD_SCRIPT, *args], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines = [(time.perf_counter() - started, line.rstrip()) for line in process.stdout]
    if process.wait() != 0:
        sys.exit(f"bench: {BUILD_SCRIPT} {' '.join(args)} failed:\n" + "\n".join(line for _, line in lines))
    return [*lines, (time.perf_counter() - started, "")]


def total(lines: list[tuple[float, str]]) -> float:
    return lines[-1][0]


def seconds_until(lines: list[tuple[float, str]], prefix: str) -> float:
    return next(elapsed for elapsed, line in lines if line.startswith(prefix))


def copy_build_inputs(target: Path) -> None:
    """The files the runner image is built from, as scripts/build-images.sh hashes them."""
    dockerignore = (ROOT / ".dockerignore").read_text()
    paths = [line[1:].rstrip("/") for line in dockerignore.splitlines() if line.startswith("!")]
    for relative in [*paths, ".dockerignore", "runner/Dockerfile", BUILD_SCRIPT]:
        source, destination = ROOT / relative, target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(source, destination)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def seconds(values: list[float]) -> str:
    median = statistics.median(values)
    text = f"{median:.2f} s" if median < 10 else f"{median:.1f} s"
    return f"{text} (median of {len(values)})" if len(values) > 1 else text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="also build a base image from nothing (under its own tag)")
    parser.add_argument("--cold-repeat", type=int, default=1, help="runner builds without cache (default 1)")
    parser.add_argument("--change-repeat", type=int, default=3, help="builds after a code change (default 3)")
    parser.add_argument("--warm-repeat", type=int, default=10, help="calls with nothing changed (default 10)")
    options = parser.parse_args()

    server = docker("version", "--format", "{{.Server.Version}}")
    print(f"bench image_build: {date.today()}, {os.cpu_count()} cores, {platform.system()}, Docker {server}")

    if image_id(BASE_IMAGE) is None:
        sys.exit(f"bench: the base image {BASE_IMAGE} is missing: run `make images` first")

    built: list[str] = []  # runner images, then the bench base: deleted in reverse order at the end
    with tempfile.TemporaryDirectory(prefix="pacta-image-bench-") as directory:
        root = Path(directory)
        copy_build_inputs(root)
        try:
            if options.cold:
                # BASE_IMAGE unset: the script makes its local base, under a tag of the bench's own.
                lines = timed_build(root, env={"BASE_IMAGE": "", "LOCAL_BASE_IMAGE": BENCH_BASE_IMAGE})
                built += [image_id(BENCH_BASE_IMAGE) or "", image_id(BENCH_IMAGE) or ""]
                base_seconds = seconds_until(lines, f"build-images: building {BENCH_IMAGE}")
            cold = []
            for _ in range(options.cold_repeat):
                cold.append(total(timed_build(root, "--no-cache")))
                built.append(image_id(BENCH_IMAGE) or "")
            change = []
            for number in range(options.change_repeat):
                with (root / "runner" / "__init__.py").open("a") as module:
                    module.write(f"# bench change {number}\n")
                change.append(total(timed_build(root)))
                built.append(image_id(BENCH_IMAGE) or "")
            timed_build(root)  # warm-up: the first call after a change may still build
            warm = [total(timed_build(root)) for _ in range(options.warm_repeat)]
            runner_size, base_size = image_size(BENCH_IMAGE), image_size(BASE_IMAGE)
        finally:
            # Newest first: the bench base cannot go while an image built on it remains.
            for identifier in dict.fromkeys(reversed(built)):
                if identifier:
                    subprocess.run(["docker", "rmi", identifier], capture_output=True)

    if options.cold:
        print(f"  base image from nothing (mmdebstrap, docker import):          {base_seconds:.1f} s")

    print(f"  runner image, cold (--no-cache: pip downloads, every layer):  {seconds(cold)}")
    print(f"  runner image after a code change (runner/ edited):            {seconds(change)}")
    print(f"  runner image, nothing changed (the idempotent check):         {seconds(warm)}")
    print(f"  base image {BASE_IMAGE}:  {megabytes(base_size)}")
    print(f"  runner image:  {megabytes(runner_size)}, {megabytes(runner_size - base_size)} over its base")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
