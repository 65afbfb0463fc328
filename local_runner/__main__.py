"""`python -m local_runner`: the developer CLI (see local_runner/cli.py)."""

from local_runner.cli import cli

cli()
