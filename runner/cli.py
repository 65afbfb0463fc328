"""Command line of `python -m runner`.

Without arguments it runs the task its environment describes (the container's entry point). The
`parse-portfolio` subcommand runs only the portfolio parser on local directories, without storage.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runner import __version__

if TYPE_CHECKING:
    import argparse

# `parse-portfolio` runs without pydantic, the contracts and the Azure SDKs: imported, they take
# about 0.12 s and 14 MiB of a parse's whole process. Only the task path and --help import them,
# and these two exit codes are runner.errors' values (tests/runner/test_cli.py checks they agree).
EXIT_SUCCEEDED = 0
EXIT_BAD_ENVIRONMENT = 2


def environment_help() -> str:
    """The epilog of --help: the environment a task run reads."""
    from orchestrations.contracts import RunnerEnv
    from runner.environment import TASK_ID_VAR, TASK_TYPE_VAR

    return f"""\
Without a subcommand, the runner reads PACTA's {TASK_ID_VAR}, {TASK_TYPE_VAR} and <TYPE>_REQUEST
(e.g. PARSE_PORTFOLIO_REQUEST={{"IncompleteUploadIDs":[],"BlobURIs":["az://uploads/x.csv"]}}) and
{RunnerEnv.RUN_ID}, {RunnerEnv.CALLBACK_TOKEN}, {RunnerEnv.EVENTS_QUEUE}, {RunnerEnv.OUTPUT_PREFIX},
{RunnerEnv.INPUT_SCOPES} (a JSON list of the az://<container>/[<prefix>/] the inputs must lie in),
{RunnerEnv.STORAGE_CONNECTION_STRING} (or {RunnerEnv.BLOB_ACCOUNT_URL} and
{RunnerEnv.QUEUE_ACCOUNT_URL} with a managed identity) and, optionally, {RunnerEnv.WORK_DIR}.
create_report, create_audit and create_dashboard also read {RunnerEnv.TASK_COMMAND} (a JSON list),
{RunnerEnv.ARTIFACTS_CONTAINER}, {RunnerEnv.BENCHMARKS_DIR} and {RunnerEnv.PACTA_DATA_DIR}; each
defaults to PACTA's value (Rscript ... run_pacta.R, reports, /mnt/benchmark-data/..., ...).
It exits 0 when the task succeeded, 1 when it failed and 2 when the environment is invalid.
"""


def build_parser() -> argparse.ArgumentParser:
    import argparse  # here, not at the top: the plain parse command does without it (_plain_parse_command)

    class _RunnerParser(argparse.ArgumentParser):
        """Writes the environment epilog only when help is printed (it imports the contracts)."""

        def format_help(self) -> str:
            if self.epilog is None:
                self.epilog = environment_help()
            return super().format_help()

    parser = _RunnerParser(
        prog="python -m runner",
        description="Run one PACTA task inside the runner image.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=argparse.ArgumentParser)
    parse = commands.add_parser(
        "parse-portfolio",
        help="parse the portfolio CSVs in INPUT_DIR into OUTPUT_DIR (no storage)",
        description="Write one CSV per portfolio and processed_portfolios.json into OUTPUT_DIR.",
    )
    parse.add_argument(
        "input_dir", type=Path, metavar="INPUT_DIR", help="directory of portfolio CSV files"
    )
    parse.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR", help="created if missing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if _plain_parse_command(arguments):  # as argparse would read it, without importing argparse
        code = parse_portfolio_command(Path(arguments[1]), Path(arguments[2]))
        if argv is None:  # this process's own command line: it ends now
            import gc

            gc.freeze()  # the collector's last pass at exit would walk every object still alive (5 ms)
        return code
    args = build_parser().parse_args(arguments)
    if args.command == "parse-portfolio":
        return parse_portfolio_command(args.input_dir, args.output_dir)
    # Imported here: the parse-portfolio command needs no storage SDKs.
    from runner.run import run

    # As PID 1 in a container, a process without a SIGTERM handler ignores SIGTERM: `docker stop`
    # and a stopped Container Apps execution would wait out their grace and SIGKILL us, and no
    # `failed` message would be sent. Turn SIGTERM into a reported failure instead.
    signal.signal(signal.SIGTERM, _raise_terminated)
    return run(os.environ)


def _plain_parse_command(arguments: Sequence[str]) -> bool:
    """Whether the arguments are `parse-portfolio INPUT_DIR OUTPUT_DIR` and nothing else, neither
    directory starting with `-`. The parse bench counts the whole process (issue 14): argparse and
    what it imports (gettext, locale) and builds took 3 ms of it."""
    return (
        len(arguments) == 3
        and arguments[0] == "parse-portfolio"
        and all(argument and not argument.startswith("-") for argument in arguments[1:])
    )


def _raise_terminated(signum: int, frame: object) -> None:
    from runner.errors import TerminatedError  # already imported by the task run this handler serves

    # Once is enough: a second SIGTERM must not interrupt the failure report being sent.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise TerminatedError()


def parse_portfolio_command(input_dir: Path, output_dir: Path) -> int:
    """Run the parser alone; print one line per input file. Exit 0 once the manifest is written.

    The first input file's MD5 is started first, in a process of its own (sniff.start_md5s), and the
    rest of the parser is imported while it is taken: 15-20 ms of hashing on a core start-up leaves
    idle. Only the first: the others' are started as each file is read, one process at a time. The
    files are those process_directory reads, in its order (no dot files, no directories)."""
    if not input_dir.is_dir():
        print(f"runner: INPUT_DIR {input_dir} is not a directory", file=sys.stderr)
        return EXIT_BAD_ENVIRONMENT
    from runner.tasks.portfolio_parser.sniff import cancel_started, start_md5s

    files = sorted(
        (path for path in input_dir.iterdir() if path.is_file() and not path.name.startswith(".")),
        key=lambda path: path.name,
    )
    start_md5s(files[:1])
    try:
        from runner.logs import run_logging
        from runner.tasks.parse_portfolio import MANIFEST_NAME, process_directory

        with run_logging(None, run_id="local", secrets=[]):
            entries = process_directory(input_dir, output_dir)
    finally:
        cancel_started()
    for entry in entries:
        if "portfolios" in entry:
            names = ", ".join(portfolio["output_filename"] for portfolio in entry["portfolios"])
            print(f"{entry['input_filename']}: {len(entry['portfolios'])} portfolio(s): {names}")
        else:
            print(f"{entry['input_filename']}: cannot import: {entry.get('error_detail')}")
    print(f"wrote {output_dir / MANIFEST_NAME}")
    return EXIT_SUCCEEDED
