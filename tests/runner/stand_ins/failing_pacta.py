"""A stand-in for a PACTA R script that fails: it prints 40 numbered lines (stdout and stderr, as R's
logger and `stop()` do) and exits 3, writing nothing. Standard library only."""

from __future__ import annotations

import sys

LINES = 40
EXIT_CODE = 3


def main() -> int:
    for number in range(1, LINES + 1):
        stream = sys.stderr if number % 2 else sys.stdout
        print(f"line {number} of the failing script", file=stream, flush=True)
    print("Error in run_pacta(): stand-in failure", file=sys.stderr, flush=True)
    return EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
