"""Long messages are cut to a bound, and a visible marker says how much was cut."""

from __future__ import annotations

import sys

from runner.errors import MAX_ERROR_MESSAGE_CHARS, RunnerError
from runner.tasks.pacta_command import TAIL_CHARS, run_command
from runner.text import quoted, shorten


def test_a_text_within_the_limit_is_kept_whole() -> None:
    assert shorten("x" * 300, 300) == "x" * 300


def test_a_long_text_keeps_its_start_and_says_how_many_characters_were_cut() -> None:
    text = "a" * 500 + "b" * 500

    cut = shorten(text, 300)

    assert len(cut) <= 300 and cut.startswith("a" * 200)
    kept = cut.split(" [...")[0]
    assert cut.endswith(f"[... {len(text) - len(kept):,} characters cut]")


def test_a_tail_keeps_its_end_and_says_how_many_characters_were_cut_before_it() -> None:
    cut = shorten("a" * 500 + "b" * 500, 300, keep="end")

    assert len(cut) <= 300 and cut.endswith("b" * 200)
    assert cut.startswith("[... ") and "characters cut] bbb" in cut


def test_a_quoted_value_shows_at_most_its_first_characters() -> None:
    assert quoted("GB00", 100) == "'GB00'"
    assert quoted("x" * 5000, 100) == repr("x" * 100) + " [... 4,900 characters cut]"


def test_a_run_errors_message_is_cut_with_a_marker_saying_how_much() -> None:
    message = "The PACTA command failed. " + "y" * 10_000

    run_error = RunnerError("pacta_command_failed", message).to_run_error()

    assert len(run_error.message) <= MAX_ERROR_MESSAGE_CHARS
    assert run_error.message.startswith("The PACTA command failed. yyy")
    assert run_error.message.endswith("characters cut]")


def test_a_commands_tail_is_cut_at_its_start_with_a_marker() -> None:
    script = "for n in range(40): print(str(n).rjust(3, '0') + 'z' * 200)"

    result = run_command([sys.executable, "-c", script], env={})

    assert len(result.tail) <= TAIL_CHARS
    assert result.tail.startswith("[... ") and "characters cut]" in result.tail.splitlines()[0]
    assert result.tail.endswith("039" + "z" * 200)
