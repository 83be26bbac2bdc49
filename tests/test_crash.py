"""Crash test: kill -9 the daemon at random moments; nothing is duplicated, nothing is lost.

Each trial starts `postscheduler run` on a burst of deliveries to two accounts, an outbox
(idempotent) and a signed webhook on 127.0.0.1 (at-most-once: the platform cannot be asked),
kills it with SIGKILL at a random moment, then restarts it to finish. Afterwards every
delivery must have reached its destination exactly once, or be `unconfirmed` (having reached
it at most once), and nothing may be left planned or in flight.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from postscheduler.ledger import DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger

from .conftest import Project
from .fakes.webhook_server import WebhookServer

TRIALS = 20
POSTS = 8
SECRET = "crash-test-secret-0042"


def write_project(root: Path, url: str) -> Project:
    project = Project(
        root,
        f"""\
timezone: UTC
posts_dir: posts
ledger: state/ledger.db
accounts:
  outbox: {{platform: outbox, path: outbox}}
  site: {{platform: webhook, url: "{url}", secret: "${{SITE_SECRET}}"}}
defaults: {{accounts: [outbox, site]}}
publishing:
  retry: {{attempts: 5, first_delay: 1s, max_delay: 2s}}
""",
    )
    due = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat(timespec="seconds")
    for i in range(POSTS):
        thread = "thread: [Second part., Third part.]\n" if i % 3 == 0 else ""
        project.write(f"p{i}.yaml", f"id: p{i}\nat: {due}\ntext: Post {i}.\n{thread}")
    return project


def start(project: Project) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
        env={**os.environ, "SITE_SECRET": SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def settle(project: Project) -> None:
    """Restart after the crash and let the daemon finish everything it may finish."""
    result = subprocess.run(
        [sys.executable, "-m", "postscheduler", "run", "--once", "-c", str(project.config_path)],
        env={**os.environ, "SITE_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr


def check(project: Project, server: WebhookServer) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    ledger = SqliteLedger(project.root / "state" / "ledger.db")
    try:
        rows = ledger.deliveries()
    finally:
        ledger.close()
    assert len(rows) == 2 * (POSTS + 2 * len(range(0, POSTS, 3)))
    arrived = collections.Counter(server.keys())
    assert all(n == 1 for n in arrived.values()), f"duplicates at the webhook: {arrived}"
    timeline = (project.root / "outbox" / "timeline.txt").read_text(encoding="utf-8")
    state = {row.key: row.state for row in rows}
    for row in rows:
        outcomes[row.state.value] += 1
        if row.key.account == "site":
            got = arrived.get(row.identity or "", 0)
            if row.state is DeliveryState.PUBLISHED:
                assert got == 1, f"{row.key} published but arrived {got} times"
            elif row.state is DeliveryState.UNCONFIRMED:
                assert got <= 1
            else:
                # A later thread part waits behind an unconfirmed one: a reply cannot be
                # sent until a person says whether the part before it went out.
                assert row.state is DeliveryState.PLANNED and row.key.part > 0, row
                before = dataclasses.replace(row.key, part=row.key.part - 1)
                assert state[before] in (DeliveryState.UNCONFIRMED, DeliveryState.PLANNED)
                assert got == 0
        else:
            assert row.state is DeliveryState.PUBLISHED, f"{row.key} left {row.state}"
            name = f"{row.key.post_id}.outbox.{row.key.part + 1}.json"
            record = json.loads((project.root / "outbox" / name).read_text())
            assert record["id"] == row.identity
            assert timeline.count(row.identity or "-") == 1, f"{row.key} in the timeline twice"
    return outcomes


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20270114")))
    totals: collections.Counter[str] = collections.Counter()
    with WebhookServer(SECRET) as server:
        server.latency = 0.02
        for trial in range(TRIALS):
            server.received.clear()
            project = write_project(tmp_path / f"trial{trial}", server.url)
            daemon = start(project)
            time.sleep(rng.uniform(0.2, 1.6))  # before, during or after the burst
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            settle(project)
            totals += check(project, server)
    # The trials must have exercised the interesting paths, not just clean runs.
    assert totals["published"] > 0
    print(f"\n{TRIALS} trials: {dict(totals)}")
