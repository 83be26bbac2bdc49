"""What one delivery costs the ledger: a claim and its outcome, one after another.

    python bench/ledger_ops.py [--deliveries 500] [--repeat 5] [--backend sqlite|postgresql]

Plans --deliveries rows, then times `claim` + `record_published` for each, on a fresh
ledger per round: a SQLite file, or a fresh database on a PostgreSQL server started here
from the installed binaries (as the tests do). Prints the median of the rounds' mean
microseconds per delivery. This is the ledger thread's share of every send: with 500 due
at once it is paid 500 times, one after another, under the same GIL as the HTTP requests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from postscheduler.ledger import DeliveryKey, Ledger
from postscheduler.ledger.sqlite import SqliteLedger

HERE = Path(__file__).resolve().parent
T0 = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)


def per_delivery(ledger: Ledger, n: int) -> float:
    with ledger.transaction():
        for i in range(n):
            ledger.plan(DeliveryKey(f"p{i}", "a"), T0, "h", T0)
    began = time.perf_counter()
    for i in range(n):
        key = DeliveryKey(f"p{i}", "a")
        ledger.claim(key, f"id-{i}", T0)
        ledger.record_published(key, f"r{i}", f"https://example.test/{i}", T0)
    return (time.perf_counter() - began) / n * 1e6


@contextlib.contextmanager
def ledgers(backend: str) -> Iterator[Callable[[], Ledger]]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            rounds = iter(range(1_000_000))
            yield lambda: SqliteLedger(Path(tmp) / f"ledger{next(rounds)}.db")
        return
    sys.path.insert(0, str(HERE.parent))
    from tests.postgres_server import running

    from postscheduler.ledger.postgres import PostgresLedger

    with running() as server:
        yield lambda: PostgresLedger(server.new_database())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    results = []
    with ledgers(args.backend) as new_ledger:
        for _ in range(args.repeat):
            ledger = new_ledger()
            try:
                results.append(per_delivery(ledger, args.deliveries))
            finally:
                ledger.close()
    q = statistics.quantiles(results, n=4) if len(results) > 1 else [results[0]] * 3
    print(
        f"{args.backend}: claim + record_published, median {statistics.median(results):.0f} µs "
        f"per delivery (quartiles {q[0]:.0f}-{q[2]:.0f}, {args.repeat} rounds of "
        f"{args.deliveries})"
    )


if __name__ == "__main__":
    main()
