"""The delivery engine against scripted publishers and the real outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from postscheduler.delivery.engine import Engine
from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.posts.rules import validate
from postscheduler.publishers import (
    OutcomeUnknownError,
    PermanentError,
    Published,
    Publisher,
    PublishJob,
    Resolution,
    TransientError,
)
from postscheduler.redact import Redactor

from .conftest import Project

T0 = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)

CONFIG = """\
timezone: UTC
posts_dir: posts
ledger: ledger.db
accounts:
  outbox: {platform: outbox, path: outbox}
  a: {platform: outbox, path: out-a}
  b: {platform: outbox, path: out-b}
defaults: {accounts: [outbox]}
publishing:
  late_grace: 30m
  retry: {attempts: 3, first_delay: 30s, max_delay: 10m}
"""


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


class Scripted(Publisher):
    """Publishes according to a script: each entry is an exception to raise or None."""

    platform = "outbox"

    def __init__(self, script: list[Exception | None] | None = None, idempotent: bool = False):
        self.script = list(script or [])
        self.calls: list[PublishJob] = []
        self.active = 0
        self.max_active = 0
        self.delay = 0.0
        self.idempotent = idempotent  # type: ignore[misc]  # per fake, not per class

    async def publish(self, job: PublishJob) -> Published:
        self.calls.append(job)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            outcome = self.script.pop(0) if self.script else None
            if outcome is not None:
                raise outcome
            return Published(f"r{len(self.calls)}", f"https://example.test/{len(self.calls)}")
        finally:
            self.active -= 1

    async def check_credentials(self) -> str:
        return "scripted"


@pytest.fixture
def project(make_project: Callable[[str], Project]) -> Project:
    return make_project(CONFIG)


def engine_for(project: Project, clock: Clock, **publishers: Publisher) -> Engine:
    settings = project.settings()
    ledger = SqliteLedger(project.root / "ledger.db")
    engine = Engine(
        settings, ledger, clock=clock, publishers=publishers, redact=Redactor.for_settings(settings)
    )
    engine.load(validate(settings, now=clock()))
    return engine


def state(engine: Engine, post: str, account: str = "outbox", part: int = 0) -> Any:
    row = engine.ledger.get(DeliveryKey(post, account, part))
    assert row is not None
    return row


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_outbox_publishes_exactly_once(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: Hello.\nthread: [Two., Three.]\n")
    clock = Clock(T0 + dt.timedelta(seconds=1))
    engine = engine_for(project, clock)
    run(engine.run_due())
    run(engine.run_due())
    files = sorted(p.name for p in (project.root / "outbox").glob("*.json"))
    assert files == ["p.outbox.1.json", "p.outbox.2.json", "p.outbox.3.json"]
    second = json.loads((project.root / "outbox" / "p.outbox.2.json").read_text())
    first_id = state(engine, "p").remote_id
    assert second["in_reply_to"] == first_id and second["text"] == "Two."
    timeline = (project.root / "outbox" / "timeline.txt").read_text()
    assert timeline.count("=== ") == 3
    assert [state(engine, "p", part=i).state for i in range(3)] == [DeliveryState.PUBLISHED] * 3


def test_not_due_yet_is_not_sent(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 10:00\ntext: Later.\n")
    fake = Scripted()
    engine = engine_for(project, Clock(), outbox=fake)
    run(engine.run_due())
    assert fake.calls == [] and state(engine, "p").state is DeliveryState.PLANNED
    assert run(engine.deliver("p", "outbox")) == dt.datetime(2027, 1, 14, 10, 0, tzinfo=dt.UTC)


def test_thread_parts_in_order_each_replying_to_the_last(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\nthread: [Two., Three.]\n")
    fake = Scripted()
    engine = engine_for(project, Clock(), outbox=fake)
    run(engine.run_due())
    assert [c.text for c in fake.calls] == ["One.", "Two.", "Three."]
    assert [c.reply_to.remote_id if c.reply_to else None for c in fake.calls] == [None, "r1", "r2"]
    assert all(c.root is None or c.root.remote_id == "r1" for c in fake.calls)


def test_transient_error_retries_with_backoff_then_fails(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\nthread: [Two.]\n")
    fake = Scripted([TransientError("503 Service Unavailable")] * 3)
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    again = run(engine.deliver("p", "outbox"))
    row = state(engine, "p")
    assert row.state is DeliveryState.RETRY and row.reason == "503 Service Unavailable"
    assert T0 + dt.timedelta(seconds=15) <= again <= T0 + dt.timedelta(seconds=30)  # jitter
    clock.now = again
    again = run(engine.deliver("p", "outbox"))
    assert T0 + dt.timedelta(seconds=15 + 30) <= again  # doubled
    clock.now = again
    assert run(engine.deliver("p", "outbox")) is None
    row = state(engine, "p")
    assert row.state is DeliveryState.FAILED and "gave up after 3 attempts" in row.reason
    assert state(engine, "p", part=1).state is DeliveryState.PLANNED  # the thread stops there
    assert len({c.identity for c in fake.calls}) == 1  # the same identity on every attempt


def test_retry_after_is_honoured(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted([TransientError("429 Too Many Requests", retry_after=120)])
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    assert run(engine.deliver("p", "outbox")) == T0 + dt.timedelta(seconds=120)
    clock.advance(seconds=119)
    run(engine.run_due())
    assert len(fake.calls) == 1
    clock.advance(seconds=1)
    run(engine.run_due())
    assert state(engine, "p").state is DeliveryState.PUBLISHED and len(fake.calls) == 2


def test_a_rate_limit_holds_the_account_not_only_its_post(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    project.write("q.yaml", "id: q\nat: 2027-01-14 09:00\ntext: Two.\n")
    fake = Scripted([TransientError("429 Too Many Requests", retry_after=120)])
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    assert run(engine.deliver("p", "outbox")) == T0 + dt.timedelta(seconds=120)
    # q was not rate limited itself, but the account was: it waits as long, sending nothing.
    assert run(engine.deliver("q", "outbox")) == T0 + dt.timedelta(seconds=120)
    assert len(fake.calls) == 1 and state(engine, "q").state is DeliveryState.PLANNED
    clock.advance(seconds=120)
    run(engine.run_due())
    assert len(fake.calls) == 3


def test_min_gap_holds_across_daemons_sharing_a_ledger(
    make_project: Callable[[str], Project], postgres: Any
) -> None:
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    project = make_project(
        CONFIG.replace("ledger: ledger.db", f"ledger: {url}").replace(
            "  a: {platform: outbox, path: out-a}",
            "  a: {platform: outbox, path: out-a, min_gap: 10m}",
        )
    )
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: one\naccounts: [a]\n")
    project.write("q.yaml", "id: q\nat: 2027-01-14 09:00\ntext: two\naccounts: [a]\n")
    clock = Clock()
    settings = project.settings()
    engines = []
    for n in range(2):  # two daemons, each with its own connection and memory
        ledger = PostgresLedger(url)
        ledger.register(f"d{n}", "h", n, dt.timedelta(minutes=30), clock())
        engine = Engine(settings, ledger, clock=clock, publishers={"a": Scripted()})
        engine.load(validate(settings, now=clock()))
        engines.append(engine)
    assert run(engines[0].deliver("p", "a")) is None  # sent
    assert run(engines[1].deliver("q", "a")) == T0 + dt.timedelta(minutes=10)
    clock.advance(minutes=10)
    assert run(engines[1].deliver("q", "a")) is None
    for engine in engines:
        assert engine.ledger.get(DeliveryKey("q", "a")).state is DeliveryState.PUBLISHED  # type: ignore[union-attr]
        engine.ledger.close()


def test_daemons_sharing_a_ledger_share_out_the_accounts_first_try(
    make_project: Callable[[str], Project], postgres: Any
) -> None:
    """Each account is tried first by one daemon; the others look a quarter lease after its
    time (their jobs are scheduled then), in case the first cannot send it."""
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    project = make_project(
        CONFIG.replace("ledger: ledger.db", f"ledger: {url}").replace(
            "defaults: {accounts: [outbox]}", "defaults: {accounts: [outbox, a, b]}"
        )
    )
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: one\n")
    clock = Clock()
    settings = project.settings()
    handoff = settings.config.publishing.lease / 4
    fakes = [Scripted(), Scripted()]
    engines = []
    for n in range(2):
        ledger = PostgresLedger(url)
        ledger.register(f"d{n}", "h", n, dt.timedelta(minutes=30), clock())
        engine = Engine(
            settings, ledger, clock=clock, publishers=dict.fromkeys(("outbox", "a", "b"), fakes[n])
        )
        engine.peers = ["d0", "d1"]
        engine.load(validate(settings, now=clock()))
        engines.append(engine)
    try:
        firsts = {}
        for account in ("outbox", "a", "b"):
            looks = [e.first_look_at(account, T0) for e in engines]
            assert sorted(looks) == [T0, T0 + handoff], account  # one first, one after
            firsts[account] = looks.index(T0)
            second = engines[1 - firsts[account]]
            assert run(second.deliver("p", account)) == T0 + handoff  # not yet its turn
        assert fakes[0].calls == [] and fakes[1].calls == []
        for account, n in firsts.items():
            assert run(engines[n].deliver("p", account)) is None  # sent by the first
        clock.now = T0 + handoff
        for account, n in firsts.items():
            assert run(engines[1 - n].deliver("p", account)) is None  # found it published
        assert len(fakes[0].calls) + len(fakes[1].calls) == 3
        engines[0].peers = ["d0"]  # alone: every account is its own at once
        assert all(engines[0].first_look_at(a, T0) == T0 for a in ("outbox", "a", "b"))
    finally:
        for engine in engines:
            engine.ledger.close()


@pytest.mark.parametrize("hint", [math.inf, math.nan, 1e20, 99_999_999_999.0, -5.0])
def test_a_wild_retry_hint_is_capped_not_obeyed(project: Project, hint: float) -> None:
    """A broken or hostile server's hint (infinite, not a number, years away) must neither
    crash the delivery nor park it: it waits at most retry.max_wait (1 h by default)."""
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted([TransientError("429 Too Many Requests", retry_after=hint)])
    engine = engine_for(project, Clock(), outbox=fake)
    again = run(engine.deliver("p", "outbox"))
    row = state(engine, "p")
    assert row.state is DeliveryState.RETRY and row.retry_at == again
    assert T0 <= again <= T0 + dt.timedelta(hours=1)


def test_retry_hints_are_read_defensively() -> None:
    import httpx

    from postscheduler.publishers.http import epoch_reset, retry_after_seconds

    for value in ("inf", "nan", "1e400", "-inf", "soon", "Mon, 99 Foo 99999 99:99:99 GMT"):
        response = httpx.Response(429, headers={"Retry-After": value})
        assert retry_after_seconds(response) is None, value
    reset = epoch_reset("x-rate-limit-reset")
    assert reset(httpx.Response(429, headers={"x-rate-limit-reset": "1e400"})) is None
    wait = reset(httpx.Response(429, headers={"x-rate-limit-reset": "1e20"}))
    assert wait is not None and wait > 0  # finite: read, and the engine caps it


def test_accounts_are_dealt_round_robin_over_clients_sharing_one_tls_context() -> None:
    """httpcore's pool checks every connection it holds on each request: 500 accounts share
    out over SHARDS small pools instead of one large one (bench/daemon_bench.py fanout)."""
    from postscheduler.publishers.http import MAX_CONNECTIONS, Clients

    clients = Clients(read=30.0, connect=10.0, shards=4)
    dealt = [clients.client(i) for i in range(9)]
    assert dealt[0] is dealt[4] is dealt[8] and len({id(c) for c in dealt}) == 4
    pools = [c._transport._pool for c in dealt[:4]]  # type: ignore[attr-defined]
    assert {p._max_connections for p in pools} == {MAX_CONNECTIONS // 4}
    assert len({id(p._ssl_context) for p in pools}) == 1  # the CA bundle read once
    assert not dealt[0].follow_redirects
    run(clients.aclose())
    assert all(c.is_closed for c in dealt)


def test_permanent_error_fails_at_once_with_the_platform_words(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted([PermanentError("mastodon: 422 Text character limit of 500 exceeded")])
    engine = engine_for(project, Clock(), outbox=fake)
    assert run(engine.deliver("p", "outbox")) is None
    row = state(engine, "p")
    assert (row.state, row.reason) == (
        DeliveryState.FAILED,
        "mastodon: 422 Text character limit of 500 exceeded",
    )


def test_unknown_outcome_is_never_resent_by_a_non_idempotent_publisher(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted([OutcomeUnknownError("connection reset after the request was sent")])
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    run(engine.run_due())
    clock.advance(hours=1)
    run(engine.run_due())
    row = state(engine, "p")
    assert row.state is DeliveryState.UNCONFIRMED and "resolve p --account outbox" in row.reason
    assert len(fake.calls) == 1


class LooksItUp(Scripted):
    """A publisher that is not idempotent but can look for a lost post (Facebook's recent
    posts, Instagram's container), keeping progress between its steps."""

    def __init__(self, script: list[Exception | None], found: Published | Resolution) -> None:
        super().__init__(script)
        self.found = found
        self.lookups: list[PublishJob] = []

    async def publish(self, job: PublishJob) -> Published:
        await job.record(f"container for attempt {job.attempt}")
        return await super().publish(job)

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        self.lookups.append(job)
        return self.found


@pytest.mark.parametrize(
    ("found", "end", "calls"),
    [
        (Published("r9", "https://example.test/9"), DeliveryState.PUBLISHED, 1),
        (Resolution.NOT_SENT, DeliveryState.PUBLISHED, 2),
        (Resolution.UNKNOWN, DeliveryState.UNCONFIRMED, 1),
    ],
    ids=["found", "certainly-not-sent", "cannot-tell"],
)
def test_an_unknown_outcome_is_looked_up_before_a_person_is_asked(
    project: Project, found: Published | Resolution, end: DeliveryState, calls: int
) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = LooksItUp([OutcomeUnknownError("connection reset after the request was sent")], found)
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    again = run(engine.deliver("p", "outbox"))
    # The look-up saw what the attempt recorded before its publishing step.
    assert fake.lookups[0].progress == "container for attempt 1"
    assert state(engine, "p").progress == "container for attempt 1"
    if again is not None:
        clock.now = again
        run(engine.run_due())
        assert fake.calls[1].progress == "container for attempt 1"  # the next attempt has it
    row = state(engine, "p")
    assert row.state is end and len(fake.calls) == calls
    if found is not Resolution.NOT_SENT and isinstance(found, Published):
        assert (row.remote_id, row.remote_url) == ("r9", "https://example.test/9")
    if end is DeliveryState.UNCONFIRMED:
        assert "resolve p --account outbox" in row.reason


def test_unknown_outcome_is_resent_by_an_idempotent_publisher(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted([OutcomeUnknownError("read timeout")], idempotent=True)
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    clock.now = run(engine.deliver("p", "outbox"))
    run(engine.run_due())
    assert state(engine, "p").state is DeliveryState.PUBLISHED
    assert fake.calls[0].identity == fake.calls[1].identity


def test_an_unknown_outcome_that_exhausts_its_retries_is_unconfirmed(project: Project) -> None:
    """It may have been posted: "failed" would invite `retry --failed` to post it twice."""
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted([OutcomeUnknownError("read timeout")] * 3, idempotent=True)
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    for _ in range(3):  # retry.attempts is 3 in this configuration
        again = run(engine.deliver("p", "outbox"))
        if again is not None:
            clock.now = again
    row = state(engine, "p")
    assert len(fake.calls) == 3
    assert row.state is DeliveryState.UNCONFIRMED and "after 3 attempts" in row.reason
    assert "postscheduler resolve p --account outbox" in row.reason


def test_late_and_expired_are_skipped_loudly(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.write("late.yaml", "id: late\nat: 2027-01-14 08:00\ntext: Old.\n")
    project.write("grace.yaml", "id: grace\nat: 2027-01-14 08:45\ntext: Just in time.\n")
    project.write(
        "exp.yaml", "id: exp\nat: 2027-01-14 08:59\nexpires: 2027-01-14 09:00\ntext: Gone.\n"
    )
    fake = Scripted()
    engine = engine_for(project, Clock(), outbox=fake)
    with caplog.at_level(logging.WARNING, logger="postscheduler"):
        run(engine.run_due())
    assert (state(engine, "late").state, state(engine, "late").reason) == (
        DeliveryState.SKIPPED,
        "late",
    )
    assert state(engine, "exp").reason == "expired"
    assert state(engine, "grace").state is DeliveryState.PUBLISHED
    assert [c.key.post_id for c in fake.calls] == ["grace"]
    assert sum("SKIPPED" in r.message for r in caplog.records) == 2


def test_edit_delete_and_hold(project: Project) -> None:
    project.write("edit.yaml", "id: edit\nat: 2027-01-14 10:00\ntext: v1\n")
    project.write("gone.yaml", "id: gone\nat: 2027-01-14 10:00\ntext: bye\n")
    project.write("held.yaml", "id: held\nat: 2027-01-14 09:00\ntext: ok\n")
    clock = Clock()
    fake = Scripted()
    engine = engine_for(project, clock, outbox=fake)
    settings = engine.settings
    project.write("edit.yaml", "id: edit\nat: 2027-01-14 11:00\ntext: v2\n")
    (project.posts / "gone.yaml").unlink()
    project.write("held.yaml", "id: held\nat: 2027-01-14 09:00\ntxt: typo\n")
    engine.load(validate(settings, now=clock()))
    assert state(engine, "edit").due_at == dt.datetime(2027, 1, 14, 11, tzinfo=dt.UTC)
    assert (state(engine, "gone").state, state(engine, "gone").reason) == (
        DeliveryState.SKIPPED,
        "deleted",
    )
    run(engine.run_due())
    assert fake.calls == []  # held: its file has an error
    assert state(engine, "held").state is DeliveryState.PLANNED
    project.write("held.yaml", "id: held\nat: 2027-01-14 09:00\ntext: fixed\n")
    engine.load(validate(settings, now=clock()))
    run(engine.run_due())
    assert [c.text for c in fake.calls] == ["fixed"]


def test_a_file_that_cannot_be_read_holds_its_posts_instead_of_deleting_them(
    project: Project,
) -> None:
    project.write("pack.yaml", "posts:\n  - {id: a, at: 2027-01-14 09:00, text: One.}\n")
    clock = Clock()
    fake = Scripted()
    engine = engine_for(project, clock, outbox=fake)
    project.write("pack.yaml", "posts:\n  - {id: a, at: 2027-01-14 09:00, text: One.\n")  # no }
    engine.load(validate(engine.settings, now=clock()))
    assert state(engine, "a").state is DeliveryState.PLANNED  # not "skipped: deleted"
    run(engine.run_due())
    assert fake.calls == []
    project.write("pack.yaml", "posts:\n  - {id: a, at: 2027-01-14 09:00, text: Fixed.}\n")
    engine.load(validate(engine.settings, now=clock()))
    run(engine.run_due())
    assert [c.text for c in fake.calls] == ["Fixed."]


def test_published_post_is_not_resent_after_an_edit(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: v1\n")
    clock = Clock()
    fake = Scripted()
    engine = engine_for(project, clock, outbox=fake)
    run(engine.run_due())
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:30\ntext: v2\n")
    with caplog.at_level(logging.WARNING, logger="postscheduler"):
        result = engine.load(validate(engine.settings, now=clock()))
    clock.advance(hours=1)
    run(engine.run_due())
    assert len(fake.calls) == 1 and result.changed_after_publishing == [DeliveryKey("p", "outbox")]
    assert any("edited after it was published" in r.message for r in caplog.records)
    # Said once per edit, not on every reload (a cron mail a minute otherwise)...
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="postscheduler"):
        engine.load(validate(engine.settings, now=clock()))
    assert not any("edited after" in r.message for r in caplog.records)
    # ...and again for a new edit.
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:30\ntext: v3\n")
    with caplog.at_level(logging.WARNING, logger="postscheduler"):
        engine.load(validate(engine.settings, now=clock()))
    assert any("edited after it was published" in r.message for r in caplog.records)


def test_accounts_go_out_concurrently(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: hi\naccounts: [a, b]\n")
    shared = Scripted()
    shared.delay = 0.05
    engine = engine_for(project, Clock(), a=shared, b=shared)
    run(engine.run_due())
    assert shared.max_active == 2  # both accounts were in flight at once


def test_recovery_of_in_doubt_deliveries(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: hi\naccounts: [a, b, outbox]\n")
    clock = Clock()
    engine = engine_for(project, clock)
    for account in ("a", "b", "outbox"):
        engine.ledger.claim(DeliveryKey("p", account), "id-" + account, clock())
    # outbox: the file was written before the crash; a: not idempotent; b: idempotent
    run(engine.publisher("outbox").publish(_job_for(engine, "outbox")))
    a, b = Scripted(), Scripted(idempotent=True)
    engine._publishers.update(a=a, b=b)
    run(engine.recover())
    assert state(engine, "p", "outbox").state is DeliveryState.PUBLISHED
    assert state(engine, "p", "a").state is DeliveryState.UNCONFIRMED
    assert state(engine, "p", "b").state is DeliveryState.RETRY
    run(engine.run_due())
    assert a.calls == []  # never resent automatically
    assert [c.identity for c in b.calls] == ["id-b"]  # resent under its recorded identity
    assert state(engine, "p", "b").state is DeliveryState.PUBLISHED
    timeline = (project.root / "outbox" / "timeline.txt").read_text()
    assert timeline.count("=== ") == 1


class Unreachable(Scripted):
    """An idempotent platform that cannot be asked about an in-doubt delivery at first."""

    def __init__(self, answers: list[Published | Resolution | Exception]) -> None:
        super().__init__(idempotent=True)
        self.answers = answers

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_an_in_doubt_delivery_whose_platform_cannot_be_asked_stays_in_doubt(
    project: Project,
) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: hi\naccounts: [b]\n")
    clock = Clock()
    engine = engine_for(project, clock)
    engine.ledger.claim(DeliveryKey("p", "b"), "id-b", clock())
    sent = Published("r-before-crash", "https://example.test/before")
    down = TransientError("b: could not connect (ConnectError)")
    b = Unreachable([down, down, sent])
    engine._publishers.update(b=b)
    assert run(engine.recover()) == 1  # the network is not up yet: neither sent nor lost
    assert state(engine, "p", "b").state is DeliveryState.SENDING
    run(engine.run_due())
    assert b.calls == []  # nothing is sent while it is in doubt
    assert run(engine.recover()) == 1 and len(b.answers) == 2  # not asked again so soon
    clock.advance(seconds=15)
    assert run(engine.recover()) == 1 and len(b.answers) == 1  # asked: still down
    clock.advance(seconds=15)
    assert run(engine.recover()) == 1 and len(b.answers) == 1  # backing off: 30 s now
    clock.advance(seconds=15)
    assert run(engine.recover()) == 0
    row = state(engine, "p", "b")
    assert (row.state, row.remote_id) == (DeliveryState.PUBLISHED, "r-before-crash")
    assert b.calls == []


def _job_for(engine: Engine, account: str) -> PublishJob:
    from postscheduler.posts.render import render_post

    sp = engine.catalog.get("p")
    rendering = render_post(sp.post, account, engine.settings)
    row = state(engine, "p", account)
    return engine._job(rendering, rendering.parts[0], row, row.identity, [])


def test_secrets_never_reach_the_ledger_or_logs(
    make_project: Callable[[str], Project], caplog: pytest.LogCaptureFixture
) -> None:
    canary = "canary-9f3K-TOPSECRET"
    project = make_project(
        CONFIG.replace(
            "accounts:\n",
            'accounts:\n  m: {platform: mastodon, instance: "https://m.x", token: "${TOKEN}"}\n',
        )
    )
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: hi\naccounts: [m]\n")
    settings = project.settings({"TOKEN": canary})
    leaky = Scripted(
        [PermanentError(f"401 for Authorization: Bearer {canary} at /api?token={canary}")]
    )
    ledger = SqliteLedger(project.root / "ledger.db")
    engine = Engine(
        settings,
        ledger,
        clock=Clock(),
        publishers={"m": leaky},
        redact=Redactor.for_settings(settings),
    )
    engine.load(validate(settings, now=T0))
    with caplog.at_level(logging.DEBUG, logger="postscheduler"):
        run(engine.run_due())
    row = state(engine, "p", "m")
    assert row.state is DeliveryState.FAILED and canary not in row.reason and "***" in row.reason
    assert all(canary not in (e.detail or "") for e in ledger.events())
    assert canary not in (project.root / "ledger.db").read_bytes().decode("latin-1")
    assert all(canary not in r.getMessage() for r in caplog.records)


def test_dry_run_sends_nothing(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: hi\n")
    fake = Scripted()
    settings = project.settings()
    ledger = SqliteLedger(project.root / "ledger.db")
    engine = Engine(settings, ledger, clock=Clock(), publishers={"outbox": fake}, dry_run=True)
    engine.load(validate(settings, now=T0))
    run(engine.run_due())
    assert fake.calls == [] and state(engine, "p").state is DeliveryState.PLANNED


def test_min_gap_spaces_one_account_s_posts(make_project: Callable[[str], Project]) -> None:
    project = make_project(
        CONFIG.replace(
            "  a: {platform: outbox, path: out-a}",
            "  a: {platform: outbox, path: out-a, min_gap: 10m}",
        )
    )
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: one\naccounts: [a, b]\n")
    project.write("q.yaml", "id: q\nat: 2027-01-14 09:00\ntext: two\naccounts: [a, b]\n")
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds=seconds)

    settings = project.settings()
    fakes = {"a": Scripted(), "b": Scripted()}
    engine = Engine(settings, SqliteLedger(":memory:"), clock=clock, publishers=fakes, sleep=sleep)
    engine.load(validate(settings, now=clock()))
    run(engine.run_due())
    assert slept == [600.0]  # account a waited ten minutes between its two posts
    assert len(fakes["a"].calls) == len(fakes["b"].calls) == 2


def test_reloads_do_not_revive_late_posts_or_churn_drafts(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.write("late.yaml", "id: late\nat: 2027-01-14 08:00\ntext: Old.\n")
    project.write("draft.yaml", "id: draft\nstatus: draft\ntext: Not yet.\n")
    fake = Scripted()
    engine = engine_for(project, Clock(), outbox=fake)
    run(engine.run_due())
    events_before = len(engine.ledger.events())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="postscheduler"):
        for _ in range(3):
            engine.load(validate(engine.settings, now=T0))
            run(engine.run_due())
    assert state(engine, "late").reason == "late" and state(engine, "draft").reason == "draft"
    assert len(engine.ledger.events()) == events_before  # nothing changed, nothing logged
    assert not any("SKIPPED" in r.message for r in caplog.records)
    assert fake.calls == []
    project.write("draft.yaml", "id: draft\nat: 2027-01-14 09:00\ntext: Ready.\n")
    project.write("late.yaml", "id: late\nat: 2027-01-14 09:00\ntext: Old, moved.\n")
    engine.load(validate(engine.settings, now=T0))
    run(engine.run_due())
    assert sorted(c.key.post_id for c in fake.calls) == ["draft", "late"]


def test_account_on_a_platform_without_a_publisher_fails_clearly(
    make_project: Callable[[str], Project], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every registered platform has a publisher (test_platforms checks it); one that cannot
    # be made (its module broken in an install) must still fail clearly, alone.
    from postscheduler import publishers
    from postscheduler.errors import PermanentError

    real = publishers.publisher_class

    def publisher_class(platform: str) -> type[publishers.Publisher]:
        if platform == "bluesky":
            raise PermanentError("publishing to bluesky is not available in this version")
        return real(platform)

    monkeypatch.setattr(publishers, "publisher_class", publisher_class)
    project = make_project(
        CONFIG.replace(
            "accounts:\n",
            'accounts:\n  sky: {platform: bluesky, handle: c.example, app_password: "${P}"}\n',
        )
    )
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: hi\naccounts: [sky, outbox]\n")
    engine = engine_for(project, Clock())
    engine.prepare()  # logs the account that cannot publish, does not raise
    run(engine.run_due())
    row = state(engine, "p", "sky")
    assert row.state is DeliveryState.FAILED and "not available" in row.reason
    assert state(engine, "p", "outbox").state is DeliveryState.PUBLISHED  # the rest goes on


def test_an_answer_the_ledger_cannot_take_is_written_once_it_can(project: Project) -> None:
    """The disk full after the post went out: the answer is kept and written when space
    returns; nothing is sent twice and the delivery does not stay in flight."""
    from postscheduler.errors import LedgerError

    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    settings = project.settings()
    ledger = SqliteLedger(":memory:")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    fake = Scripted()
    engine = Engine(settings, ledger, clock=Clock(), publishers={"outbox": fake}, sleep=sleep)
    engine.load(validate(settings, now=T0))
    real = ledger.record_published
    failures = iter([True, True, False])

    def record_published(*args: Any) -> Any:
        if next(failures):
            raise LedgerError("database or disk is full")
        return real(*args)

    ledger.record_published = record_published  # type: ignore[method-assign]
    run(engine.deliver("p", "outbox"))
    assert len(fake.calls) == 1 and waits == [1.0, 2.0]
    assert state(engine, "p").state is DeliveryState.PUBLISHED


def test_an_account_added_later_gets_only_what_is_due_after(
    make_project: Callable[[str], Project],
) -> None:
    """Adding an account to defaults.accounts must not send it the posts already out."""
    project = make_project(CONFIG)
    project.write("old.yaml", "id: old\nat: 2027-01-14 09:00\ntext: Already out.\n")
    project.write("new.yaml", "id: new\nat: 2027-01-14 12:00\ntext: Still to come.\n")
    clock = Clock(T0 + dt.timedelta(minutes=5))
    engine = engine_for(project, clock)
    run(engine.run_due())
    assert state(engine, "old").state is DeliveryState.PUBLISHED
    project.config_path.write_text(
        CONFIG.replace("defaults: {accounts: [outbox]}", "defaults: {accounts: [outbox, a]}")
    )
    settings = project.settings()
    engine.settings = settings
    engine.load(validate(settings, now=clock()))
    run(engine.run_due())
    skipped = state(engine, "old", "a")
    assert skipped.state is DeliveryState.SKIPPED and "added after" in (skipped.reason or "")
    assert not (project.root / "out-a").exists()  # nothing was sent to the new account
    assert state(engine, "new", "a").state is DeliveryState.PLANNED  # what is due later goes


def test_a_pause_holds_what_is_due_and_a_resume_lets_it_go(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\naccounts: [a, b]\n")
    a, b = Scripted(), Scripted()
    clock = Clock()
    engine = engine_for(project, clock, a=a, b=b)
    engine.ledger.pause("a", None, "breaking news", clock())
    with caplog.at_level(logging.WARNING, logger="postscheduler"):
        again = run(engine.deliver("p", "a"))
        run(engine.deliver("p", "a"))
    assert again == clock() + dt.timedelta(seconds=1)  # looks again within a second
    assert state(engine, "p", "a").state is DeliveryState.PLANNED and a.calls == []
    assert [r.message for r in caplog.records if "PAUSED" in r.message] == [
        "PAUSED p → a: held by the pause of a (until resume: breaking news)"
    ]  # said once, not every second
    run(engine.deliver("p", "b"))  # another account is not held
    assert state(engine, "p", "b").state is DeliveryState.PUBLISHED
    engine.ledger.resume("a", clock())
    clock.advance(seconds=1)
    run(engine.run_due())
    assert state(engine, "p", "a").state is DeliveryState.PUBLISHED and len(a.calls) == 1


def test_a_pause_of_everything_until_a_time_ends_by_itself(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted()
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    engine.ledger.pause(None, clock() + dt.timedelta(minutes=10), None, clock())
    assert run(engine.deliver("p", "outbox")) == clock() + dt.timedelta(seconds=1)
    clock.advance(minutes=10)
    run(engine.run_due())
    assert state(engine, "p").state is DeliveryState.PUBLISHED


def test_posts_held_longer_than_late_grace_are_skipped_as_late_after_a_resume(
    project: Project,
) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: One.\n")
    fake = Scripted()
    clock = Clock()
    engine = engine_for(project, clock, outbox=fake)
    engine.ledger.pause(None, None, None, clock())
    run(engine.deliver("p", "outbox"))
    clock.advance(hours=2)  # late_grace is 30 minutes here
    engine.ledger.resume(None, clock())
    run(engine.run_due())
    row = state(engine, "p")
    assert (row.state, row.reason, fake.calls) == (
        DeliveryState.SKIPPED,
        "late, held by a pause",
        [],
    )


def test_a_daemon_behind_on_a_shared_ledger_neither_cancels_nor_reverts_newer_plans(
    tmp_path: Path,
) -> None:
    """Two daemons, two checkouts of the posts, one ledger: B's checkout is behind A's (it
    fetched posts_repo before A planned), so what A planned is A's to send."""
    shared_db = tmp_path / "shared.db"

    def daemon(name: str, config: str, posts: dict[str, str]) -> Engine:
        project = Project(tmp_path / name, config.replace("ledger.db", str(shared_db)))
        for file, text in posts.items():
            project.write(file, text)
        settings = project.settings()
        ledger = SqliteLedger(shared_db)
        ledger.shared = True  # as PostgreSQL's: several daemons on it
        return Engine(settings, ledger, clock=clock, publishers={"outbox": Scripted()})

    clock = Clock(T0 - dt.timedelta(hours=1))
    p_v1 = "id: p\nat: 2027-01-14 09:00\ntext: First words.\n"
    p_v2 = "id: p\nat: 2027-01-14 09:00\ntext: Better words.\n"
    q = "id: q\nat: 2027-01-14 09:00\ntext: A new post.\naccounts: [outbox, a]\n"
    a = daemon("a", CONFIG, {"p.yaml": p_v2, "q.yaml": q})
    without_a = CONFIG.replace("  a: {platform: outbox, path: out-a}\n", "")
    b = daemon("b", without_a, {"p.yaml": p_v1})
    b.posts_as_of = clock() - dt.timedelta(minutes=5)
    a.posts_as_of = clock()
    a.load(validate(a.settings, now=clock()))
    clock.advance(minutes=1)
    b.load(validate(b.settings, now=clock()))
    rows = {(r.key.post_id, r.key.account): r for r in b.ledger.deliveries()}
    assert rows["q", "outbox"].state is DeliveryState.PLANNED  # not cancelled as deleted
    assert rows["q", "a"].state is DeliveryState.PLANNED  # not B's account at all
    hash_v2 = rows["p", "outbox"].content_hash
    clock.now = T0
    assert run(b.deliver("p", "outbox")) is None  # B's version is not the one planned
    assert run(a.deliver("p", "outbox")) is None
    assert b.ledger.get(DeliveryKey("p", "outbox")).content_hash == hash_v2  # type: ignore[union-attr]
    sent = [job.text for job in a.publisher("outbox").calls]  # type: ignore[attr-defined]
    assert sent == ["Better words."]
    assert not b.publisher("outbox").calls  # type: ignore[attr-defined]
    # Once B has fetched since A planned, a post missing from its checkout was deleted.
    b.posts_as_of = clock() + dt.timedelta(seconds=1)
    b.load(validate(b.settings, now=clock()))
    assert b.ledger.get(DeliveryKey("q", "outbox")).state is DeliveryState.SKIPPED  # type: ignore[union-attr]
    assert b.ledger.get(DeliveryKey("q", "a")).state is DeliveryState.PLANNED  # type: ignore[union-attr]
