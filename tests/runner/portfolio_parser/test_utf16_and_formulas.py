"""Decided departures from PACTA's parser (README, "Portfolio parser"): a UTF-16 or UTF-32 file is
read (R refuses it for its NUL bytes), and a name a spreadsheet would run as a formula is warned
about but kept as it is (outputs stay the file's data, as R writes them)."""

from __future__ import annotations

import codecs
import hashlib

import pytest

from tests.runner.portfolio_parser.conftest import ParseText

OUTPUT_SIMPLE_MD5 = "0f51946d64ef6ee4daca1a6969317cba"
# What Excel's "Unicode Text" holds: tab-delimited, CRLF line ends.
UNICODE_TEXT = (
    "Investor\tPortfolio\tISIN\tMarket Value\tCurrency\r\n"
    "Müller AG\tFonds Ä\tGB0007980591\t10000\tUSD\r\n"
    "Müller AG\tFonds Ö\tGB0007980591\t10000\tUSD\r\n"
)


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (b"", "utf-16-le"),
        (b"", "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
    ],
)
def test_a_utf16_or_utf32_file_is_read_as_its_utf8_twin_is(parse_text: ParseText, bom: bytes, codec: str) -> None:
    data = bom + UNICODE_TEXT.encode(codec)

    entry = parse_text(data).entry

    twin = parse_text(UNICODE_TEXT).entry
    assert entry["input_md5"] == hashlib.md5(data).hexdigest()
    assert [(p["output_md5"], p["portfolio_name"], p["investor_name"]) for p in entry["portfolios"]] == [
        (OUTPUT_SIMPLE_MD5, "Fonds Ä", "Müller AG"),
        (OUTPUT_SIMPLE_MD5, "Fonds Ö", "Müller AG"),
    ] == [(p["output_md5"], p["portfolio_name"], p["investor_name"]) for p in twin["portfolios"]]


def test_utf16_that_does_not_decode_is_refused_saying_what_to_do(parse_text: ParseText) -> None:
    data = codecs.BOM_UTF16_LE + UNICODE_TEXT.encode("utf-16-le") + b"\x41"  # half a character at the end

    entry = parse_text(data).entry

    assert entry["error_rule"] == "bad_encoding"
    assert entry["error_detail"].startswith("the file is written in UTF-16 with a byte order mark, but the bytes near")
    assert entry["error_detail"].endswith("save it again as CSV UTF-8 (in Excel: Save As, CSV UTF-8)")


def test_a_nul_byte_in_a_text_that_is_not_utf16_still_makes_it_binary(parse_text: ParseText) -> None:
    assert parse_text(b"isin,market_value,currency\nGB0007980591,1,U\x00SD\n").entry["error_rule"] == "binary"


def test_names_a_spreadsheet_would_run_as_formulas_are_warned_about_once_and_kept(parse_text: ParseText) -> None:
    content = (
        "investor_name,portfolio_name,isin,market_value,currency\n"
        'Fund = A,"=HYPERLINK(""http://x"",""y"")",GB0007980591,10000,USD\n'
        "Fund = A,+Growth,GB0007980591,10000,USD\n"
        "@Investor,+Growth,GB0007980591,10000,USD\n"
    )

    entry = parse_text(content).entry

    assert [(w["line"], w["column"], w["rule"]) for w in entry["warnings"]] == [
        (2, "portfolio_name", "formula_like"),
        (3, "portfolio_name", "formula_like"),
        (4, "investor_name", "formula_like"),
    ]
    assert entry["warnings"][0]["message"].startswith(
        "portfolio_name '=HYPERLINK(\"http://x\",\"y\")' starts with '=', so a spreadsheet"
    )
    assert entry["warning_counts"] == {"formula_like": 3}
    assert [(p["portfolio_name"], p["investor_name"], p["output_md5"]) for p in entry["portfolios"]] == [
        ("+Growth", "@Investor", OUTPUT_SIMPLE_MD5),
        ("+Growth", "Fund = A", OUTPUT_SIMPLE_MD5),
        ('=HYPERLINK("http://x","y")', "Fund = A", OUTPUT_SIMPLE_MD5),
    ]
