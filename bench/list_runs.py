"""Listing the newest runs of a big runs table: `RunStore.list_runs(limit=50)` against its goal (issue 14).

    .venv/bin/python bench/list_runs.py [--runs 100000] [--limit 50] [--repeat 7] [--fill seed|transactions]
                                        [--compare]
    (`make bench` runs it)

Starts a private Azurite (as the tests do, its data in a temporary directory) whose runs table holds
`--runs` ended runs as the store writes them, record and listing copy (one in ten `failed`, the rest
`succeeded`), plus the concurrency cap's line rows. Then it times `list_runs(limit=--limit)` `--repeat`
times after one warm-up call, counting the entities each call reads (a response hook on the table client
counts the entities of every answer), and the same with `status=failed`. Prints min / median / max, the
entities read, the CPU a call costs in this process and in Azurite (wall times on a shared machine include
waiting for a core), the goal (0.1 s, and `limit` entities plus the marker row) and the ratios; with
`--compare` also one listing done as before (every record read and sorted). It asserts nothing.

Filling: `--fill transactions` writes the runs through the table API, 50 runs (100 rows) to an
entity-group transaction. Azurite 3.35 looks every inserted key up among all the rows of its partition,
so each transaction takes longer than the one before: the first 10,000 runs took 99 s on this busy 2-core
machine, and 100,000 would take well over 15 minutes. The default, `seed`,
writes one run through the API, stops Azurite, appends the other runs to Azurite's database file (the
same properties, serialized as the SDK sends them and checked against the row Azurite stored), rebuilds
its indexes and starts it again: about a minute.

Azurite also tests every row of a table against a query's filter, where Table storage reads only the key
range, so on Azurite the listing's time still grows with the table (about linearly).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402
from azure.data.tables._serialize import _add_entity_properties  # noqa: E402  # the SDK's own wire format

import local_runner.azurite  # noqa: E402
from local_runner.azurite import ACCOUNT_NAME, AzuriteEndpoints, find_azurite, free_port, start_azurite  # noqa: E402
from orchestrations.contracts import RunRecord, RunStatus  # noqa: E402
from orchestrations.run_slots import RunSlots  # noqa: E402
from orchestrations.run_store import PARTITION, RunStore, _from_entity, run_rows  # noqa: E402

GOAL_SECONDS = 0.1
TABLE = "runs"
# Two rows a run: 50 runs fill one entity-group transaction (at most 100 operations).
RUNS_PER_TRANSACTION = 50
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Azurite reads a seeded database of 100,000 runs (about 280 MB of JSON) before it answers: 10 to 60 s here.
SEEDED_STARTUP_TIMEOUT_SECONDS = 300.0


class EntityCounter:
    """A response hook that counts the entities the service sends back: a query's `value`, or one entity."""

    def __init__(self) -> None:
        self.read = 0

    def __call__(self, response: Any) -> None:
        http = response.http_response
        if response.http_request.method != "GET" or http.status_code != 200:
            return
        body = json.loads(http.body() or b"{}")
        self.read += len(body["value"]) if "value" in body else int("PartitionKey" in body)


def ended_run(number: int) -> RunRecord:
    at = T0 + timedelta(seconds=number)
    status = RunStatus.FAILED if number % 10 == 3 else RunStatus.SUCCEEDED
    run_id = f"run-{number:08d}-{'f' if status is RunStatus.FAILED else 's'}bench"
    return RunRecord(
        run_id=run_id, status=status, task_type="parse_portfolio", backend="process",
        execution_ref=f"process:{number}", source_uri=f"az://uploads/parse_portfolio/p{number}.csv",
        source_etag='"0x8DCAFE"', requested_at=at, started_at=at + timedelta(seconds=1),
        finished_at=at + timedelta(seconds=9), updated_at=at + timedelta(seconds=9), attempts=1, outputs_count=2,
        outputs=[f"az://runs/{run_id}/outputs/portfolio.csv", f"az://runs/{run_id}/outputs/summary.json"],
        log_uri=f"az://runs/{run_id}/runner.log",
    )


def fill_by_transactions(store: RunStore, runs: int) -> None:
    """Write runs 1..`runs`-1 (run 0 is there), oldest first, 50 to a transaction."""
    started = time.perf_counter()
    for first in range(1, runs, RUNS_PER_TRANSACTION):
        batch = [ended_run(number) for number in range(first, min(first + RUNS_PER_TRANSACTION, runs))]
        store.table.submit_transaction([("create", row) for record in batch for row in run_rows(record)])
        if (first - 1) and (first - 1) % 10_000 == 0:
            print(f"  {first - 1} runs written ({time.perf_counter() - started:.0f} s)", flush=True)


def seed_database(location: Path, runs: int) -> None:
    """Append runs 1..`runs`-1 to the runs table in the database file of the stopped Azurite at `location`,
    each row a copy of run 0's as Azurite stored it with this run's properties, and rebuild the indexes."""
    path = location / "__azurite_db_table__.json"
    database = json.loads(path.read_text())
    table = next(c for c in database["collections"] if c["name"] == f"{ACCOUNT_NAME}${TABLE}")
    stored = {doc["RowKey"]: doc for doc in table["data"]}
    templates = [stored[row["RowKey"]] for row in run_rows(ended_run(0))]
    for template, row in zip(templates, run_rows(ended_run(0)), strict=True):
        if _as_stored(row, template) != template["properties"]:
            sys.exit("Azurite stores rows differently from what this bench writes: use --fill transactions")
    data = table["data"]
    for number in range(1, runs):
        for template, row in zip(templates, run_rows(ended_run(number)), strict=True):
            data.append(template | {"RowKey": row["RowKey"], "properties": _as_stored(row, template)})
    for loki_id, doc in enumerate(data, start=1):
        doc["$loki"] = loki_id
    table["idIndex"], table["maxId"] = list(range(1, len(data) + 1)), len(data)
    for key in ("PartitionKey", "RowKey"):
        table["binaryIndices"][key] = {"name": key, "dirty": False, "values": _sorted_positions(data, key)}
    path.write_text(json.dumps(database))


def _sorted_positions(docs: list[dict[str, Any]], key: str) -> list[int]:
    """A LokiJS binary index: the positions of the docs, ordered by `key` (ASCII: JavaScript's order too)."""
    values = [doc[key] for doc in docs]
    return sorted(range(len(docs)), key=values.__getitem__)


def _as_stored(row: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The properties Azurite keeps of a row: the SDK's wire form less the string type annotations, and the
    template's timestamp."""
    wire = _add_entity_properties(row)
    properties = {k: v for k, v in wire.items() if not (k.endswith("@odata.type") and v == "Edm.String")}
    return properties | {k: template["properties"][k] for k in ("Timestamp", "Timestamp@odata.type")}


@dataclass(frozen=True)
class Listing:
    """`repeat` timed calls of one listing: wall seconds of each, and per call the most entities read and the
    mean CPU seconds of this process and of Azurite (both also wait for a core on a busy machine)."""

    seconds: list[float]
    read: int
    client_cpu: float
    azurite_cpu: float | None


def timed_listing(store: RunStore, counter: EntityCounter, azurite_pid: int, repeat: int,
                  **query: Any) -> Listing:
    store.list_runs(**query)  # warm-up: connection, and the one-time indexing were it needed
    seconds, most_read = [], 0
    azurite_before, client_before = process_cpu(azurite_pid), time.process_time()
    for _ in range(repeat):
        counter.read = 0
        started = time.perf_counter()
        store.list_runs(**query)
        seconds.append(time.perf_counter() - started)
        most_read = max(most_read, counter.read)
    azurite_after = process_cpu(azurite_pid)
    azurite_cpu = None if azurite_before is None or azurite_after is None else (
        (azurite_after - azurite_before) / repeat)
    return Listing(seconds, most_read, (time.process_time() - client_before) / repeat, azurite_cpu)


def list_by_reading_everything(store: RunStore, limit: int) -> list[RunRecord]:
    """What `list_runs` did before the listing copies: read every record of the partition and sort them."""
    records = [_from_entity(entity)
               for entity in store.table.query_entities(f"PartitionKey eq '{PARTITION}' and RowKey lt '~'")]
    records.sort(key=lambda record: record.requested_at, reverse=True)
    return records[:limit]


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(label: str, listing: Listing, limit: int) -> None:
    seconds = listing.seconds
    median = statistics.median(seconds)
    azurite = "?" if listing.azurite_cpu is None else f"{listing.azurite_cpu * 1000:.1f}"
    print(f"{label}: min {min(seconds) * 1000:.1f} ms, median {median * 1000:.1f} ms, "
          f"max {max(seconds) * 1000:.1f} ms; entities read {listing.read}; "
          f"CPU per call: client {listing.client_cpu * 1000:.1f} ms, Azurite {azurite} ms")
    print(f"  goal <= {GOAL_SECONDS * 1000:.0f} ms and <= {limit} + 1 entities: "
          f"time ratio {median / GOAL_SECONDS:.2f} (median / goal), entities ratio {listing.read / (limit + 1):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="Run records in the table.")
    parser.add_argument("--limit", type=int, default=50, help="Runs one listing asks for.")
    parser.add_argument("--repeat", type=int, default=7, help="Timed calls of each listing (at least 5).")
    parser.add_argument("--fill", choices=("seed", "transactions"), default="seed",
                        help="How the runs get into Azurite (see above).")
    parser.add_argument("--compare", action="store_true",
                        help="Also time one listing the way list_runs did before: every record read and sorted.")
    args = parser.parse_args()
    if find_azurite() is None:
        sys.exit("Azurite is not installed: run scripts/bootstrap.sh")
    location = Path(tempfile.mkdtemp(prefix="bench-list-runs-"))
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
    counter = EntityCounter()
    service = TableServiceClient.from_connection_string(endpoints.connection_string, raw_response_hook=counter)
    azurite = start_azurite(endpoints, location=location)
    try:
        started = time.perf_counter()
        print(f"filling {args.runs} runs ({args.fill}) ...", flush=True)
        store = RunStore.open(service, TABLE)
        store.table.submit_transaction([("create", row) for row in run_rows(ended_run(0))])
        RunSlots(store.table).join("run-waiting-0001", T0)
        if args.fill == "transactions":
            fill_by_transactions(store, args.runs)
        else:
            azurite.terminate()
            azurite.wait(timeout=60)
            seed_database(location, args.runs)
            local_runner.azurite.STARTUP_TIMEOUT_SECONDS = SEEDED_STARTUP_TIMEOUT_SECONDS
            azurite = start_azurite(endpoints, location=location)
        print(f"filled in {time.perf_counter() - started:.1f} s")
        repeat = max(5, args.repeat)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        listing = timed_listing(store, counter, azurite.pid, repeat, limit=args.limit)
        report(f"list_runs(limit={args.limit}), {args.runs} runs, {repeat} calls", listing, args.limit)
        listing = timed_listing(store, counter, azurite.pid, repeat, limit=args.limit, status=RunStatus.FAILED)
        report(f"list_runs(limit={args.limit}, status=failed), one run in ten failed", listing, args.limit)
        if args.compare:
            counter.read = 0
            started = time.perf_counter()
            newest = list_by_reading_everything(store, args.limit)
            print(f"before (every record read, sorted in memory): {time.perf_counter() - started:.2f} s, "
                  f"entities read {counter.read}; same runs listed: {newest == store.list_runs(limit=args.limit)}")
    finally:
        azurite.kill()  # its data is thrown away: no need to let it save 100,000s of rows
        azurite.wait(timeout=10)
        shutil.rmtree(location, ignore_errors=True)

if __name__ == "__main__":
    main()
