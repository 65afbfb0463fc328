"""A stand-in for PACTA's R scripts (`run_pacta.R`, `run_audit.sh`, `prepare_dashboard_data.R`).

Run as they are run: `python fake_run_pacta.py [--only DIR ...] [--hang] '<input JSON>'`, with PACTA's
`*_DIR` variables. It reads the JSON argument and the variables as the R scripts do, checks that every
portfolio file it names is in PORTFOLIO_DIR, and writes what the R workflow writes, in miniature:
analysis-output (audit and results .rds and .csv, a manifest), report-output (report/index.html with
assets in nested directories, a source map, a font, a file of no known type), summary-output (a PDF) and
dashboard-output/data. `received.json` in analysis-output records what it was given, for the tests.
`--only` limits the output directories it writes to (an audit writes analysis-output only); `--hang`
writes `hanging.pid` into analysis-output and sleeps until it is killed. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DIR_VARIABLES = (
    "BENCHMARKS_DIR", "PACTA_DATA_DIR", "PORTFOLIO_DIR", "REAL_ESTATE_DIR", "SCORE_CARD_DIR", "SURVEY_DIR",
    "ANALYSIS_OUTPUT_DIR", "REPORT_OUTPUT_DIR", "DASHBOARD_OUTPUT_DIR", "DASHBOARD_DATA_DIR", "SUMMARY_OUTPUT_DIR",
)
OUTPUT_VARIABLES = {
    "analysis-output": "ANALYSIS_OUTPUT_DIR",
    "report-output": "REPORT_OUTPUT_DIR",
    "dashboard-output": "DASHBOARD_DATA_DIR",
    "summary-output": "SUMMARY_OUTPUT_DIR",
}

# relative path -> content, per output directory
FILES: dict[str, dict[str, bytes]] = {
    "analysis-output": {
        "audit_file.csv": b"isin,holding_id,flag\nGB0007980591,1,Included\n",
        "audit_file.rds": b"X\n\x00\x00\x00\x03rds stand-in",
        "Equity_results_portfolio.rds": b"X\n\x00\x00\x00\x03equity",
        "manifest.json": b'{"workflow": "fake_run_pacta"}\n',
    },
    "report-output": {
        "report/index.html": b"<!doctype html><html><head><meta charset='utf-8'></head><body>PACTA</body></html>\n",
        "report/libs/bootstrap-5.3/bootstrap.min.css": b"body{margin:0}\n",
        "report/libs/app.js": b"console.log('pacta');\n//# sourceMappingURL=app.js.map\n",
        "report/libs/app.js.map": b'{"version":3,"sources":[]}\n',
        "report/fonts/roboto.woff2": b"wOF2 stand-in",
        "report/img/logo.png": b"\x89PNG\r\n\x1a\n stand-in",
        "report/data/notes.weird": b"no PACTA file type for this one\n",
        "manifest.json": b'{"report": true}\n',
    },
    "dashboard-output": {"data_map.json": b'{"map": []}\n'},
    "summary-output": {"executive_summary.pdf": b"%PDF-1.4 stand-in\n"},
}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: fake_run_pacta.py [--only DIR ...] [--hang] '<input JSON>'", file=sys.stderr)
        return 2
    params = json.loads(argv[-1])
    options = argv[1:-1]
    only = {options[i + 1] for i, option in enumerate(options) if option == "--only"} or set(OUTPUT_VARIABLES)
    missing = [name for name in DIR_VARIABLES if not os.environ.get(name)]
    if missing:
        print(f"fake_run_pacta: not set: {', '.join(missing)}", file=sys.stderr)
        return 2
    portfolio_dir = Path(os.environ["PORTFOLIO_DIR"])
    files = params["portfolio"]["files"]
    print(f"INFO [fake_run_pacta] portfolio {params['portfolio']['name']!r}: {len(files)} file(s)")
    for name in files:
        if not (portfolio_dir / name).is_file():
            print(f"ERROR [fake_run_pacta] portfolio file not found: {name}", file=sys.stderr)
            return 1
    print("DEBUG [fake_run_pacta] loading benchmarks from " + os.environ["BENCHMARKS_DIR"], file=sys.stderr)
    analysis_dir = Path(os.environ["ANALYSIS_OUTPUT_DIR"])
    received = {
        "argv": argv[1:],
        "params": params,
        "env": dict(os.environ),
        "portfolio_sizes": {name: (portfolio_dir / name).stat().st_size for name in files},
    }
    (analysis_dir / "received.json").write_text(json.dumps(received, indent=2))
    if "--hang" in options:
        (analysis_dir / "hanging.pid").write_text(str(os.getpid()))
        print("INFO [fake_run_pacta] hanging", flush=True)
        while True:
            time.sleep(1)
    for out_dir in sorted(only & set(OUTPUT_VARIABLES)):
        root = Path(os.environ[OUTPUT_VARIABLES[out_dir]])
        for relative, content in FILES[out_dir].items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        print(f"INFO [fake_run_pacta] wrote {len(FILES[out_dir])} file(s) into {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
