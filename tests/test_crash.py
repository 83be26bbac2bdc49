"""Crash test: kill -9 the daemon at random moments; nothing is duplicated, nothing is lost.

Each trial starts `postscheduler run` on a burst of deliveries to eight accounts: an outbox
(idempotent); Instagram and Threads, whose containers are recorded before they are published
and say afterwards whether they were; and five at-most-once platforms on 127.0.0.1 that
cannot be asked afterwards for certain whether a post went out: a signed webhook, X,
Telegram, a Facebook Page and LinkedIn (loopback fakes of their APIs; Facebook's and
LinkedIn's recent posts are searched). It kills the daemon with SIGKILL at a random moment,
then restarts it to finish. Afterwards every delivery must have reached its destination
exactly once, or be `unconfirmed` (having reached it at most once) on the at-most-once
platforms and on Instagram's comments; a Threads post or reply and an Instagram post are
always published exactly once. Nothing may be left in flight, and a thread part may wait
only behind an unconfirmed one.
"""

from __future__ import annotations

import collections
import contextlib
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
from typing import Any

import pytest

from postscheduler.ledger import DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger

from .conftest import Project
from .fakes.linkedin import FakeLinkedIn, read_little_text
from .fakes.meta import FakeFacebook, FakeInstagram, FakeThreads
from .fakes.platforms import FakeTelegram, FakeWebhook, FakeX

TRIALS = 20
POSTS = 8
SECRET = "crash-test-secret-0042"


ACCOUNTS = ("outbox", "site", "x", "telegram", "facebook", "instagram", "threads", "linkedin")
# Published exactly once whatever happens: the container says whether it went out.
CERTAIN = {("threads", None), ("instagram", 0)}
ENV = {
    "SITE_SECRET": SECRET,
    "X_KEY": FakeX.CREDS["consumer_key"],
    "X_SECRET": FakeX.CREDS["consumer_secret"],
    "X_TOKEN": FakeX.CREDS["token"],
    "X_TOKEN_SECRET": FakeX.CREDS["token_secret"],
    "TG_TOKEN": FakeTelegram.TOKEN,
    "FB_TOKEN": FakeFacebook.TOKEN,
    "IG_TOKEN": FakeInstagram.TOKEN,
    "THREADS_TOKEN": FakeThreads.TOKEN,
    "LI_TOKEN": FakeLinkedIn.TOKEN,
}


def part_text(post: str, part: int) -> str:
    return f"Post {post[1:]}." if part == 0 else f"Post {post[1:]}, part {part + 1}."


def write_project(root: Path, site: str, x: str, telegram: str, meta: dict[str, Any]) -> Project:
    project = Project(
        root,
        f"""\
timezone: UTC
posts_dir: posts
ledger: state/ledger.db
accounts:
  outbox: {{platform: outbox, path: outbox}}
  site: {{platform: webhook, url: "{site}", secret: "${{SITE_SECRET}}"}}
  x:
    platform: x
    consumer_key: ${{X_KEY}}
    consumer_secret: ${{X_SECRET}}
    access_token: ${{X_TOKEN}}
    access_token_secret: ${{X_TOKEN_SECRET}}
    api_base: {x}
  telegram:
    platform: telegram
    bot_token: ${{TG_TOKEN}}
    chat_id: "@c"
    api_base: {telegram}
  facebook:
    {{platform: facebook, page_id: "{FakeFacebook.PAGE}", token: "${{FB_TOKEN}}",
     api_base: "{meta["facebook"].base}"}}
  instagram:
    {{platform: instagram, user_id: "{FakeInstagram.USER}", token: "${{IG_TOKEN}}",
     api_base: "{meta["instagram"].base}"}}
  threads:
    {{platform: threads, user_id: "{FakeThreads.USER}", token: "${{THREADS_TOKEN}}",
     api_base: "{meta["threads"].base}"}}
  linkedin:
    {{platform: linkedin, author: "{FakeLinkedIn.ORG}", token: "${{LI_TOKEN}}",
     version: 202611, api_base: "{meta["linkedin"].base}"}}
media_url: https://campaign.test/posts
defaults: {{accounts: [{", ".join(ACCOUNTS)}]}}
publishing:
  retry: {{attempts: 5, first_delay: 1s, max_delay: 2s}}
""",
    )
    project.image()
    # Instagram has no text-only posts: its posts carry a photo (and its credit line).
    photo = (
        "overrides: {instagram: {image: {file: images/photo.jpg, alt: A march., credit: Ana}}}\n"
    )
    due = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat(timespec="seconds")
    for i in range(POSTS):
        post = f"p{i}"
        thread = ""
        if i % 3 == 0:
            thread = f"thread: ['{part_text(post, 1)}', '{part_text(post, 2)}']\n"
        project.write(
            f"{post}.yaml",
            f"id: {post}\nat: {due}\ntext: {part_text(post, 0)}\n{thread}{photo}",
        )
    return project


def start(project: Project) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def settle(project: Project) -> None:
    """Restart after the crash and let the daemon finish everything it may finish."""
    result = subprocess.run(
        [sys.executable, "-m", "postscheduler", "run", "--once", "-c", str(project.config_path)],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr


def _at_most_once(row: Any, got: int, state: dict[Any, DeliveryState]) -> None:
    if row.state is DeliveryState.PUBLISHED:
        assert got == 1, f"{row.key} published but arrived {got} times"
    elif row.state is DeliveryState.UNCONFIRMED:
        assert got <= 1, f"{row.key} arrived {got} times"
    else:
        # A later thread part waits behind an unconfirmed one: a reply cannot be sent until
        # a person says whether the part before it went out.
        assert row.state is DeliveryState.PLANNED and row.key.part > 0, row
        before = dataclasses.replace(row.key, part=row.key.part - 1)
        assert state[before] in (DeliveryState.UNCONFIRMED, DeliveryState.PLANNED)
        assert got == 0


def _words(text: str) -> str:
    return text.split("\n\n")[0]  # without the photo's credit line


def check(
    project: Project, site: FakeWebhook, x: FakeX, telegram: FakeTelegram, meta: dict[str, Any]
) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    ledger = SqliteLedger(project.root / "state" / "ledger.db")
    try:
        rows = ledger.deliveries()
    finally:
        ledger.close()
    assert len(rows) == len(ACCOUNTS) * (POSTS + 2 * len(range(0, POSTS, 3)))
    arrived = {
        "site": collections.Counter(site.keys()),
        "x": collections.Counter(r["body"]["text"] for r in x.received if r["path"] == "/2/tweets"),
        "telegram": collections.Counter(
            r["body"]["text"] for r in telegram.received if r["path"].endswith("/sendMessage")
        ),
        "facebook": collections.Counter(
            [p["message"] for p in meta["facebook"].posts]
            + [c["message"] for cs in meta["facebook"].comments.values() for c in cs]
        ),
        "instagram": collections.Counter(
            [_words(m["caption"]) for m in meta["instagram"].media]
            + [c["text"] for cs in meta["instagram"].comments.values() for c in cs]
        ),
        "threads": collections.Counter(m["text"] for m in meta["threads"].media),
        "linkedin": collections.Counter(
            meta["linkedin"].shown()
            + [
                read_little_text(c["message"]["text"])
                for cs in meta["linkedin"].comments.values()
                for c in cs
            ]
        ),
    }
    for name, counts in arrived.items():
        assert all(n == 1 for n in counts.values()), f"duplicates at {name}: {counts}"
    timeline = (project.root / "outbox" / "timeline.txt").read_text(encoding="utf-8")
    state = {row.key: row.state for row in rows}
    for row in rows:
        outcomes[f"{row.key.account} {row.state.value}"] += 1
        account = row.key.account
        if account == "outbox":
            assert row.state is DeliveryState.PUBLISHED, f"{row.key} left {row.state}"
            name = f"{row.key.post_id}.outbox.{row.key.part + 1}.json"
            record = json.loads((project.root / "outbox" / name).read_text())
            assert record["id"] == row.identity
            assert timeline.count(row.identity or "-") == 1, f"{row.key} in the timeline twice"
        elif account == "site":
            _at_most_once(row, arrived["site"].get(row.identity or "", 0), state)
        else:
            text = part_text(row.key.post_id, row.key.part)
            got = arrived[account].get(text, 0)
            if (account, None) in CERTAIN or (account, row.key.part) in CERTAIN:
                assert row.state is DeliveryState.PUBLISHED and got == 1, (row, got)
            _at_most_once(row, got, state)
    return outcomes


@pytest.mark.slow
def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20270114")))
    totals: collections.Counter[str] = collections.Counter()
    with FakeWebhook(SECRET) as site, FakeX() as x, FakeTelegram() as telegram:
        for fake in (site, x, telegram):
            fake.latency = 0.02
        for trial in range(TRIALS):
            site.received.clear()
            x.received.clear()
            x.texts.clear()
            telegram.received.clear()
            with contextlib.ExitStack() as stack:
                meta: dict[str, Any] = {
                    "facebook": stack.enter_context(FakeFacebook()),
                    "instagram": stack.enter_context(FakeInstagram()),
                    "threads": stack.enter_context(FakeThreads()),
                    "linkedin": stack.enter_context(FakeLinkedIn()),
                }
                for fake in meta.values():
                    fake.latency = 0.02
                # Containers ready at once: the poll's one-second wait would outlast the burst.
                meta["instagram"].processing_checks = meta["threads"].processing_checks = 0
                project = write_project(
                    tmp_path / f"trial{trial}", site.url, x.base, telegram.base, meta
                )
                daemon = start(project)
                time.sleep(rng.uniform(0.2, 1.6))  # before, during or after the burst
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
                settle(project)
                totals += check(project, site, x, telegram, meta)
    print(f"\n{TRIALS} trials: {dict(sorted(totals.items()))}")
    # The trials must have exercised the interesting paths, not just clean runs.
    assert sum(n for k, n in totals.items() if k.endswith("published")) > 0
