"""Chaos test: three daemons on one PostgreSQL ledger, killed at random, and the database
itself restarted mid-run; nothing is sent twice, nothing is lost, thread order holds.

Each daemon has its own checkout of the same posts (its own folder, state and daemon id),
as on three machines. A burst of posts falls due within half a minute to four accounts:
Mastodon (mastodon-mock, a third-party server: idempotent, so always exactly once) and three
at-most-once platforms faked on 127.0.0.1 (a signed webhook, X, Telegram). While they go
out, random daemons are killed with SIGKILL and started again, and PostgreSQL is stopped
(immediately, as in a crash) for longer than a lease and started again. Then the daemons
are stopped, one ``run --once`` settles what is left, and every delivery is checked against
what the servers received: published exactly once, or ``unconfirmed`` having arrived at
most once (at-most-once platforms only), and each reply sent in answer to the part before.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.postgres import PostgresLedger

from . import mastodon_server
from .conftest import Project
from .fakes.platforms import FakeTelegram, FakeWebhook, FakeX
from .test_crash import _at_most_once, part_text

DAEMONS = 3
POSTS = 30  # every third a thread of three: 50 parts to each of four accounts
KILLS = 24
LEASE_SECONDS = 3
SECRET = "chaos-test-secret-0042"
RUN = (sys.executable, "-m", "postscheduler", "run")
ACCOUNTS = ("mastodon", "site", "x", "telegram")
ENV = {
    "M_TOKEN": mastodon_server.TOKEN,
    "SITE_SECRET": SECRET,
    "X_KEY": FakeX.CREDS["consumer_key"],
    "X_SECRET": FakeX.CREDS["consumer_secret"],
    "X_TOKEN": FakeX.CREDS["token"],
    "X_TOKEN_SECRET": FakeX.CREDS["token_secret"],
    "TG_TOKEN": FakeTelegram.TOKEN,
}


def write_checkout(root: Path, ledger: str, mastodon: str, site: str, x: str, tg: str) -> Project:
    return Project(
        root,
        f"""\
timezone: UTC
posts_dir: posts
ledger: {ledger}
accounts:
  mastodon: {{platform: mastodon, instance: "{mastodon}", token: "${{M_TOKEN}}"}}
  site: {{platform: webhook, url: "{site}", secret: "${{SITE_SECRET}}"}}
  x:
    platform: x
    consumer_key: ${{X_KEY}}
    consumer_secret: ${{X_SECRET}}
    access_token: ${{X_TOKEN}}
    access_token_secret: ${{X_TOKEN_SECRET}}
    api_base: {x}
  telegram: {{platform: telegram, bot_token: "${{TG_TOKEN}}", chat_id: "@c", api_base: {tg}}}
defaults: {{accounts: [{", ".join(ACCOUNTS)}]}}
publishing:
  retry: {{attempts: 8, first_delay: 1s, max_delay: 3s}}
  lease: {LEASE_SECONDS}s
""",
    )


def write_posts(project: Project, first: dt.datetime) -> None:
    for i in range(POSTS):
        post = f"p{i}"
        thread = ""
        if i % 3 == 0:
            thread = f"thread: ['{part_text(post, 1)}', '{part_text(post, 2)}']\n"
        at = (first + dt.timedelta(seconds=i)).isoformat(timespec="seconds")
        project.write(f"{post}.yaml", f"id: {post}\nat: {at}\ntext: {part_text(post, 0)}\n{thread}")


class Fleet:
    """The daemons, one per checkout, each restarted after a kill; their logs kept."""

    def __init__(self, checkouts: list[Project], logs: Path) -> None:
        self.checkouts = checkouts
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.current: dict[int, Path] = {}  # each daemon's log since its last start
        self.starts = 0
        for n in range(len(checkouts)):
            self.procs.append(self._start(n))

    def _start(self, n: int) -> subprocess.Popen[bytes]:
        self.starts += 1
        self.current[n] = self.logs / f"daemon{n}.{self.starts}.log"
        log = self.current[n].open("wb")
        with log:
            return subprocess.Popen(
                [*RUN, "-c", str(self.checkouts[n].config_path)],
                env={**os.environ, **ENV},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill_and_restart(self, n: int) -> None:
        self.procs[n].send_signal(signal.SIGKILL)
        self.procs[n].wait()
        self.procs[n] = self._start(n)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=90)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def until_logged(self, text: str, *, every: bool, timeout: float = 60) -> None:
        """Wait for ``text`` in the log of every daemon running (or of any), woken by each
        write to the logs; fails after ``timeout`` seconds."""
        import watchfiles

        def seen() -> bool:
            found = [text in p.read_text(errors="replace") for p in self.current.values()]
            return all(found) if every else any(found)

        deadline = time.monotonic() + timeout
        if seen():
            return
        for _ in watchfiles.watch(
            self.logs, debounce=20, step=10, rust_timeout=500, yield_on_timeout=True
        ):
            if seen():
                return
            if time.monotonic() > deadline:
                tails = "".join(
                    f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                    for p in self.current.values()
                    if text not in p.read_text(errors="replace")
                )
                pytest.fail(f"not logged within {timeout} s: {text!r}; the logs without it:{tails}")

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


@pytest.fixture
def fakes() -> Iterator[tuple[FakeWebhook, FakeX, FakeTelegram]]:
    with FakeWebhook(SECRET) as site, FakeX() as x, FakeTelegram() as telegram:
        for fake in (site, x, telegram):
            fake.latency = 0.4  # a wide window for a kill to land mid-request
        yield site, x, telegram


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).strip()


def notify_changes(url: str) -> None:
    """A trigger on the test's database that announces every change to the deliveries, so
    the test waits for the daemons' writes instead of polling (LISTEN/NOTIFY)."""
    with PostgresLedger(url):  # the tables, as the daemons will find them
        pass
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE FUNCTION chaos_changed() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_notify('deliveries', ''); RETURN NULL; END $$"
        )
        db.execute(
            "CREATE TRIGGER chaos_changed AFTER INSERT OR UPDATE ON deliveries "
            "FOR EACH STATEMENT EXECUTE FUNCTION chaos_changed()"
        )


def until_settled(url: str, timeout: float) -> None:
    """Wait (bounded) for the daemons to have settled everything they can: nothing left
    planned but thread parts behind another, nothing to retry, nothing in flight. Checked
    again at each change the trigger announces."""
    open_states = (DeliveryState.RETRY, DeliveryState.SENDING)
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN deliveries")  # before the first look: no change is missed
        while time.monotonic() < deadline:
            with PostgresLedger(url) as db:
                rows = db.deliveries()
            if not [
                r
                for r in rows
                if r.state in open_states or (r.state is DeliveryState.PLANNED and r.key.part == 0)
            ]:
                return
            for _ in listener.notifies(timeout=deadline - time.monotonic(), stop_after=1):
                pass


@pytest.mark.slow
def test_three_daemons_killed_at_random_and_the_database_restarted(
    tmp_path: Path,
    postgres: Any,
    fakes: tuple[FakeWebhook, FakeX, FakeTelegram],
) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261203")))
    site, x, telegram = fakes
    url = postgres.new_database()
    notify_changes(url)
    with mastodon_server.running(tmp_path) as mastodon:
        checkouts = [
            write_checkout(tmp_path / f"host{n}", url, mastodon, site.url, x.base, telegram.base)
            for n in range(DAEMONS)
        ]
        first = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
        for checkout in checkouts:
            write_posts(checkout, first)
        logs = tmp_path / "logs"
        logs.mkdir()
        fleet = Fleet(checkouts, logs)
        try:
            outage_at = KILLS // 2
            for kill in range(KILLS):
                time.sleep(rng.uniform(0.3, 2.0))  # a random moment, not a wait for an event
                fleet.kill_and_restart(rng.randrange(DAEMONS))
                if kill == outage_at:
                    postgres.stop("immediate")
                    try:
                        fleet.until_logged("LEDGER UNREACHABLE", every=True)
                        # The outage must outlast the leases: their running out is a matter
                        # of time, there is nothing to wait for but the clock.
                        time.sleep(LEASE_SECONDS)
                    finally:  # the server is the session's: the tests after this need it
                        postgres.start()
                    fleet.until_logged("after the lease ran out", every=False)
            until_settled(url, timeout=120)
            fleet.stop()
        finally:
            fleet.kill_all()
        settled = subprocess.run(
            [*RUN, "--once", "-c", str(checkouts[0].config_path)],
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = fleet.output() + settled.stderr
        assert "Traceback" not in output, output[-20000:]
        statuses = mastodon_server.statuses(mastodon)
    assert SECRET not in output and FakeTelegram.TOKEN not in output

    with PostgresLedger(url) as db:
        rows = db.deliveries()
    assert len(rows) == len(ACCOUNTS) * (POSTS + 2 * len(range(0, POSTS, 3)))
    assert len(rows) >= 100
    state = {row.key: row.state for row in rows}
    remote = {row.key: row.remote_id for row in rows}
    arrived = {
        "mastodon": collections.Counter(_text(s["content"]) for s in statuses),
        "site": collections.Counter(site.keys()),
        "x": collections.Counter(r["body"]["text"] for r in x.received if r["path"] == "/2/tweets"),
        "telegram": collections.Counter(
            r["body"]["text"] for r in telegram.received if r["path"].endswith("/sendMessage")
        ),
    }
    for name, counts in arrived.items():
        assert all(n == 1 for n in counts.values()), f"duplicates at {name}: {counts}"
    outcomes: collections.Counter[str] = collections.Counter()
    for row in rows:
        outcomes[f"{row.key.account} {row.state.value}"] += 1
        assert row.owner is None, f"{row.key} left in flight"
        if row.key.account == "mastodon":
            got = arrived["mastodon"].get(part_text(row.key.post_id, row.key.part), 0)
            assert row.state is DeliveryState.PUBLISHED and got == 1, (row, got)
        elif row.key.account == "site":
            _at_most_once(row, arrived["site"].get(row.identity or "", 0), state)
        else:
            got = arrived[row.key.account].get(part_text(row.key.post_id, row.key.part), 0)
            _at_most_once(row, got, state)

    # Thread order: each reply answers the part before it, as the ledger recorded it.
    replies = {s["id"]: s["in_reply_to_id"] for s in statuses}
    tweets = [r["body"] for r in x.received if r["path"] == "/2/tweets"]
    x_reply = {b["text"]: (b.get("reply") or {}).get("in_reply_to_tweet_id") for b in tweets}
    for key, value in remote.items():
        if key.part == 0 or state[key] is not DeliveryState.PUBLISHED:
            continue
        before = remote[DeliveryKey(key.post_id, key.account, key.part - 1)]
        if key.account == "mastodon":
            assert replies[value] == before, key
        elif key.account == "x":
            assert x_reply[part_text(key.post_id, key.part)] == before, key
    print(f"\n{KILLS} kills, one database restart: {dict(sorted(outcomes.items()))}")
    # The run must have exercised recovery across daemons, not only clean sends.
    assert "LEDGER UNREACHABLE" in output
    assert sum(n for k, n in outcomes.items() if k.endswith("published")) > len(rows) // 2
    assert "recovered " in output or "UNCONFIRMED" in output, "no kill landed mid-send"
