"""Speed and memory of the portfolio parser, as whole processes, against pandas.read_csv.

    .venv/bin/python bench/parser.py [--runs 5] [--rows 1000000] [--more]

(`make bench` runs it.) Inputs are generated here with a fixed seed: five columns (investor_name,
portfolio_name, isin, market_value, currency), 12 sub-portfolios, ISINs drawn from a universe of
20,000 valid ones, market values with two decimals, four currencies.

By default it prints issue 14's comparison: `python -m runner parse-portfolio IN OUT` (the whole
process: start-up, imports, the parse, the outputs and manifest) against a bare
`python -c "import pandas; pandas.read_csv(FILE)"` of the same `--rows` file, each pair run side by
side (one after the other, order alternating) `--runs` times after a warm-up of each: min / median /
max wall seconds, the ratio of the medians (and of the minimums), and the peak RSS of each
(ru_maxrss from wait4: the largest of the process and the workers it forks; this bench process is
far smaller, so it does not raise the figure). pandas comes with requirements-dev.txt (benches only, never
in the runner image); without it only the parser's figures are printed.

`--more` adds the older figures: in-process parse times of 200,000-row files (sorted, interleaved,
quoted) against PACTA's R parser, and peak RSS (VmHWM) by file size.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

R_SECONDS_200K = 9.1  # PACTA's R parser on a 200,000-row, 12-portfolio file, measured on these machines
SEED = 20240131
GROUPS = 12
ISIN_UNIVERSE = 20_000
CURRENCIES = ("USD", "EUR", "GBP", "JPY")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Runs one parse in a fresh interpreter and prints its peak RSS and that of the processes it forked,
# in KiB. VmHWM for itself: Linux carries ru_maxrss over from the parent across exec, VmHWM starts
# afresh with the program. ru_maxrss for its forked workers (their peak, shared pages included).
MEMORY_PROBE = """
import resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from runner.tasks.parse_portfolio import process_directory
process_directory(Path(sys.argv[2]), Path(sys.argv[3]))
status = Path("/proc/self/status").read_text()
print(status.split("VmHWM:")[1].split()[0], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def make_isin(rng: random.Random) -> str:
    body = rng.choice(("US", "DE", "GB", "FR", "JP")) + "".join(rng.choice(ALPHABET) for _ in range(9))
    digits = "".join(str(int(char, 36)) for char in body)
    total = sum(int(d) * 2 // 10 + int(d) * 2 % 10 if i % 2 == 0 else int(d) for i, d in enumerate(reversed(digits)))
    return body + str(-total % 10)


def write_portfolio(path: Path, rows: int, *, shuffled: bool = False, quoted: bool = False) -> None:
    rng = random.Random(SEED)
    universe = [make_isin(rng) for _ in range(ISIN_UNIVERSE)]
    groups = [row * GROUPS // rows for row in range(rows)]
    if shuffled:
        rng.shuffle(groups)
    q = '"' if quoted else ""
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(f"{q}investor_name{q},{q}portfolio_name{q},{q}isin{q},{q}market_value{q},{q}currency{q}\n")
        for group in groups:
            value = rng.randrange(1, 10**9) / 100
            out.write(
                f"{q}Investor {group % 3}{q},{q}Portfolio {group:02d}{q},{q}{rng.choice(universe)}{q},"
                f"{value:.2f},{q}{rng.choice(CURRENCIES)}{q}\n"
            )


def parse_seconds(input_dir: Path, work: Path) -> float:
    from runner.tasks.parse_portfolio import process_directory

    output = work / "out"
    shutil.rmtree(output, ignore_errors=True)
    started = time.perf_counter()
    process_directory(input_dir, output)
    return time.perf_counter() - started


def speed(work: Path, rows: int, runs: int) -> None:
    print(f"speed: {rows:,} rows, {GROUPS} sub-portfolios, median of {runs} runs after a warm-up")
    for label, options in (
        ("sorted by portfolio", {}),
        ("portfolios interleaved", {"shuffled": True}),
        ("every string quoted", {"quoted": True}),
    ):
        input_dir = work / f"speed-{label.split()[0]}"
        input_dir.mkdir()
        write_portfolio(input_dir / "portfolio.csv", rows, **options)
        parse_seconds(input_dir, work)
        median = statistics.median(parse_seconds(input_dir, work) for _ in range(runs))
        print(f"  {label:24} {median:6.3f} s   {R_SECONDS_200K * rows / 200_000 / median:5.1f}x PACTA's R parser")


def peak_rss_kib(input_dir: Path, work: Path) -> tuple[int, int]:
    """(the parse's peak RSS, its forked workers' peak RSS), in KiB."""
    output = work / "out"
    shutil.rmtree(output, ignore_errors=True)
    completed = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(ROOT), str(input_dir), str(output)],
        capture_output=True, text=True, check=True,
    )
    parent, workers = completed.stdout.split()[-2:]
    return int(parent), int(workers)


def memory(work: Path, sizes: list[int]) -> None:
    empty = work / "memory-empty"
    empty.mkdir()
    baseline, _ = peak_rss_kib(empty, work)
    print(f"memory: peak RSS of one parse in a fresh process (an empty directory: {baseline / 1024:.0f} MiB)")
    for rows in sizes:
        input_dir = work / f"memory-{rows}"
        input_dir.mkdir()
        write_portfolio(input_dir / "portfolio.csv", rows)
        peak, workers = peak_rss_kib(input_dir, work)
        largest = max(path.stat().st_size for path in (work / "out").glob("*.csv"))
        size = (input_dir / "portfolio.csv").stat().st_size
        growth = (peak - baseline) * 1024
        print(
            f"  {rows:>9,} rows  input {size / 2**20:5.1f} MiB  largest output {largest / 2**20:4.1f} MiB  "
            f"peak RSS {peak / 1024:5.1f} MiB (+{growth / 2**20:4.1f} MiB = {growth / largest:4.1f}x the "
            f"largest output), forked worker {workers / 1024:5.1f} MiB"
        )
        shutil.rmtree(input_dir)


PANDAS_READ = "import sys, pandas; pandas.read_csv(sys.argv[1])"


def timed_process(command: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one process, run to its end; its output is discarded."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} exited {process.returncode}: {errors[-2000:]}")
    return seconds, usage.ru_maxrss


def cpu_pressure() -> str:
    """`, CPU pressure N%`: Linux's share of the last 10 s in which runnable tasks waited for a CPU (`some
    avg10`; the parser splits its work only below 50%, runner/tasks/portfolio_parser/parallel.py); "" without it."""
    try:
        with open("/proc/pressure/cpu", encoding="ascii") as file:
            fields = dict(field.split("=", 1) for field in file.readline().split()[1:] if "=" in field)
        return f", CPU pressure {float(fields['avg10']):.0f}%"
    except (OSError, KeyError, ValueError):
        return ""


def spread(values: list[float]) -> str:
    return f"{min(values):6.3f} / {statistics.median(values):6.3f} / {max(values):6.3f}"


def against_pandas(work: Path, rows: int, runs: int) -> None:
    input_dir = work / "whole"
    input_dir.mkdir()
    path = input_dir / "portfolio.csv"
    write_portfolio(path, rows)
    output = work / "whole-out"
    # As the runner image does (`compileall` in runner/Dockerfile): where PYTHONDONTWRITEBYTECODE is set, as on
    # these machines, nothing else writes the checkout's bytecode, and each run would compile the parser again.
    compileall.compile_dir(ROOT / "runner", quiet=1)
    commands = {
        "parser": [sys.executable, "-m", "runner", "parse-portfolio", str(input_dir), str(output)],
        "pandas": [sys.executable, "-c", PANDAS_READ, str(path)],
    }
    if importlib.util.find_spec("pandas") is None:
        print("pandas is not installed here (.venv/bin/pip install pandas): the parser alone")
        del commands["pandas"]
    print(
        f"whole process: {rows:,} rows ({path.stat().st_size / 2**20:.1f} MiB), {GROUPS} sub-portfolios, "
        f"{runs} runs of each side by side after a warm-up; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f} at the start{cpu_pressure()}"
    )
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, list[int]] = {name: [] for name in commands}
    names = list(commands)
    for run in range(runs + 1):
        for name in names if run % 2 else reversed(names):
            shutil.rmtree(output, ignore_errors=True)
            wall, peak = timed_process(commands[name])
            if run:  # run 0 is the warm-up
                seconds[name].append(wall)
                peaks[name].append(peak)
    labels = {"parser": "python -m runner parse-portfolio", "pandas": "pandas.read_csv (import included)"}
    print(f"  {'':34} {'min / median / max s':>26}   peak RSS (max of runs)")
    for name in commands:
        print(f"  {labels[name]:34} {spread(seconds[name]):>26}   {max(peaks[name]) / 1024:6.1f} MiB")
    if "pandas" in commands:
        ratio = statistics.median(seconds["parser"]) / statistics.median(seconds["pandas"])
        fastest = min(seconds["parser"]) / min(seconds["pandas"])
        print(f"  parser / pandas: {ratio:.2f}x (medians), {fastest:.2f}x (minimums)")
    print(f"  load average {os.getloadavg()[0]:.2f} at the end{cpu_pressure()}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  (this bench process peaked at {own / 1024:.1f} MiB, below both: the RSS figures are the children's)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--more", action="store_true", help="also the in-process and memory-by-size figures")
    parser.add_argument("--speed-rows", type=int, default=200_000, help="rows of the --more speed files")
    parser.add_argument("--memory-rows", default="250000,500000,1000000", help="sizes of the --more memory files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-parser-") as tmp:
        work = Path(tmp)
        against_pandas(work, args.rows, args.runs)
        if args.more:
            speed(work, args.speed_rows, args.runs)
            memory(work, [int(rows) for rows in args.memory_rows.split(",") if rows])


if __name__ == "__main__":
    main()
