"""PACTA's portfolio parser (`pacta.portfolio.import::read_portfolio_csv` and
`workflow.portfolio.parsing::process_directory`), rule for rule, in Python.

Modules, in the order a file meets them:
- sniff: pass 1 over the bytes (MD5, NUL bytes; encoding facts; delimiter counts, see delimiter).
- encoding: which codec the file is read with.
- records: pass 2, the records in blocks (a fast split for simple files, `csv` otherwise).
- header, readr_types: header detection and which column is which; the column-count gate.
- marks: the decimal and grouping mark guess over the whole market_value column.
- checks: per-row warnings (ISIN check digit, ISO 4217 currency).
- groups: rows by sub-portfolio, spilled to disk past a bound.
- number_parsing, market_values, r_format: readr's number parsing and R's `write.csv` output.
- export: one `<uuid>.csv` per sub-portfolio.
`runner.tasks.parse_portfolio` builds the manifest from these. Every deliberate difference from
PACTA's parser is listed in docs/portfolio-parser.md.
"""
