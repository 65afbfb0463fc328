"""Speed and memory of the portfolio parser (`runner.tasks.parse_portfolio.process_directory`).

    .venv/bin/python bench/parser.py [--runs 5] [--rows 200000] [--memory-rows 250000,500000,1000000]

(`make bench` runs it.) Inputs are generated here with a fixed seed: five columns (investor_name,
portfolio_name, isin, market_value, currency), 12 sub-portfolios, ISINs drawn from a universe of
20,000 valid ones, market values with two decimals, four currencies.

Speed: the median of `--runs` parses (after one warm-up) of a `--rows` file, against the 9.1 s
PACTA's R parser took for such a file on these machines; also the same rows shuffled (sub-portfolios
interleaved) and fully quoted (as R's write.csv quotes), which take the slower paths.
Memory: each `--memory-rows` file is parsed in a fresh process, which reports its peak RSS
(VmHWM); printed beside the largest output CSV, with the growth over an empty run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.tasks.parse_portfolio import process_directory  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--memory-rows", default="250000,500000,1000000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-parser-") as tmp:
        work = Path(tmp)
        speed(work, args.rows, args.runs)
        memory(work, [int(rows) for rows in args.memory_rows.split(",") if rows])


if __name__ == "__main__":
    main()
