"""The organiser's commands on a big ledger: months of a coalition's campaign.

    python bench/ledger_scale.py [--deliveries 100000] [--accounts 10] [--upcoming 100]
                                 [--repeat 5]

Builds a SQLite ledger with --deliveries rows (posts of the past, published, each to
--accounts accounts, with their history), plus --upcoming posts still to come (their files
in posts/), then times `status`, `queue` and `history --post` as whole processes, the way
an organiser runs them: median and quartiles of --repeat runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_startup import ENV  # bench/ is this script's folder: on sys.path; .pyc files kept

from postscheduler.ledger import DeliveryKey
from postscheduler.ledger.sqlite import SqliteLedger


def build(root: Path, deliveries: int, accounts: int, upcoming: int) -> str:
    names = [f"a{i}" for i in range(accounts)]
    lines = ["timezone: UTC", "posts_dir: posts", "ledger: state/ledger.db", "accounts:"]
    lines += [f"  {name}: {{platform: outbox, path: out-{name}}}" for name in names]
    lines += [f"defaults: {{accounts: [{', '.join(names)}]}}"]
    (root / "scheduler.yaml").write_text("\n".join(lines) + "\n")
    posts = root / "posts"
    posts.mkdir()
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=365)
    ledger = SqliteLedger(root / "state" / "ledger.db")
    past = deliveries // accounts
    with ledger.transaction():
        for i in range(past):
            at = start + dt.timedelta(minutes=30 * i)
            for name in names:
                key = DeliveryKey(f"past-{i}", name)
                ledger.plan(key, at, "h", at)
                ledger.claim(key, f"id-{i}-{name}", at)
                ledger.record_published(key, f"r{i}", f"https://example.test/{i}", at)
    ledger.close()
    for i in range(upcoming):
        at = (now + dt.timedelta(days=1, hours=i)).isoformat(timespec="seconds")
        (posts / f"next-{i}.yaml").write_text(f"id: next-{i}\nat: {at}\ntext: Coming up {i}.\n")
    # The daemon would have planned them: run --once plans and sends nothing not yet due.
    subprocess.run(
        [sys.executable, "-m", "postscheduler", "run", "--once", "-c", "scheduler.yaml"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    return f"past-{past // 2}"


def timed(root: Path, *args: str) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "postscheduler", *args, "-c", "scheduler.yaml"],
        cwd=root,
        capture_output=True,
        env={**ENV, "COLUMNS": "200"},
        check=False,
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--upcoming", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        post = build(root, args.deliveries, args.accounts, args.upcoming)
        print(f"built {args.deliveries:,} deliveries in {time.perf_counter() - began:.0f} s")
        commands = {
            "status": ["status"],
            "queue": ["queue"],
            f"history --post {post}": ["history", "--post", post],
            "python -c pass (start-up floor)": None,
        }
        for label, command in commands.items():
            runs = []
            for _ in range(args.repeat):
                if command is None:
                    began = time.perf_counter()
                    subprocess.run([sys.executable, "-c", "pass"], check=True)
                    runs.append(time.perf_counter() - began)
                else:
                    runs.append(timed(root, *command))
            q = statistics.quantiles(runs, n=4) if len(runs) > 1 else runs * 3
            print(
                f"{label}: median {statistics.median(runs) * 1000:.0f} ms "
                f"(quartiles {q[0] * 1000:.0f}-{q[2] * 1000:.0f})"
            )


if __name__ == "__main__":
    main()
