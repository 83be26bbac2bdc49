"""The ledger contract, run over every implementation."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postscheduler.errors import DaemonIdInUseError, LeaseLostError
from postscheduler.ledger import (
    CLAIMABLE_STATES,
    ClaimAttempt,
    DeliveryKey,
    DeliveryState,
    Ledger,
    LedgerError,
    LedgerLockedError,
    open_ledger,
)
from postscheduler.ledger.sqlite import SqliteLedger

T0 = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)
KEY = DeliveryKey("peru-article", "outbox")


def later(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgresql"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Ledger]]:
    opened: list[Ledger] = []
    database = None
    if request.param == "postgresql":
        database = request.getfixturevalue("postgres").new_database()

    def make() -> Ledger:
        ledger: Ledger
        if database is not None:
            from postscheduler.ledger.postgres import PostgresLedger

            ledger = PostgresLedger(database)  # the same database for each: reopened
        else:
            memory = request.param == "sqlite-memory"
            ledger = SqliteLedger(":memory:" if memory else str(tmp_path / "ledger.db"))
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(make_ledger: Callable[[], Ledger]) -> Ledger:
    return make_ledger()


def test_plan_then_replan_before_sending(ledger: Ledger) -> None:
    d = ledger.plan(KEY, T0, "h1", now=later(-60))
    assert (d.state, d.due_at, d.attempts) == (DeliveryState.PLANNED, T0, 0)
    d = ledger.plan(KEY, later(30), "h2", now=later(-50))
    assert (d.due_at, d.content_hash) == (later(30), "h2")


def test_claim_is_exclusive_and_keeps_identity(ledger: Ledger) -> None:
    ledger.plan(KEY, T0, "h", now=T0)
    first = ledger.claim(KEY, "id-1", now=T0)
    assert first is not None and first.state is DeliveryState.SENDING and first.attempts == 1
    assert ledger.claim(KEY, "id-2", now=T0) is None  # already in flight
    ledger.record_retry(KEY, later(1), "503 Service Unavailable", now=T0)
    second = ledger.claim(KEY, "id-3", now=later(1))
    assert second is not None and second.attempts == 2
    assert second.identity == "id-1"  # every attempt presents the same identity


def test_published_is_final_and_replanning_does_not_touch_it(ledger: Ledger) -> None:
    ledger.plan(KEY, T0, "h", now=T0)
    ledger.claim(KEY, "id", now=T0)
    d = ledger.record_published(KEY, "109", "https://m.example/@a/109", now=T0)
    assert (d.state, d.remote_id, d.remote_url) == (
        DeliveryState.PUBLISHED,
        "109",
        "https://m.example/@a/109",
    )
    assert ledger.plan(KEY, later(60), "changed", now=later(1)).state is DeliveryState.PUBLISHED
    assert ledger.claim(KEY, "id", now=later(2)) is None
    assert ledger.record_skipped(KEY, "deleted", now=later(3)).state is DeliveryState.PUBLISHED


def test_failed_and_unconfirmed_wait_for_a_person(ledger: Ledger) -> None:
    a, b = KEY, DeliveryKey("peru-article", "x")
    for key in (a, b):
        ledger.plan(key, T0, "h", now=T0)
        ledger.claim(key, "id", now=T0)
    assert (
        ledger.record_failed(a, "422 Validation failed", now=T0).reason == "422 Validation failed"
    )
    assert (
        ledger.record_unconfirmed(b, "connection lost after sending", now=T0).state
        is DeliveryState.UNCONFIRMED
    )
    for key in (a, b):
        assert ledger.claim(key, "id", now=later(1)) is None
        requeued = ledger.requeue(key, later(5), "resolve --resend", now=later(1))
        assert (requeued.state, requeued.due_at) == (DeliveryState.PLANNED, later(5))
    assert ledger.claim(a, "new", now=later(5)).identity == "id"  # type: ignore[union-attr]


def test_skipped_only_before_sending_and_revived_by_a_new_plan(ledger: Ledger) -> None:
    ledger.plan(KEY, T0, "h", now=T0)
    assert ledger.record_skipped(KEY, "late", now=later(90)).state is DeliveryState.SKIPPED
    revived = ledger.plan(KEY, later(120), "h", now=later(91))
    assert (revived.state, revived.reason) == (DeliveryState.PLANNED, None)
    ledger.claim(KEY, "id", now=later(120))
    assert ledger.record_skipped(KEY, "late", now=later(121)).state is DeliveryState.SENDING


def test_in_doubt_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first = SqliteLedger(path)
    first.plan(KEY, T0, "h", now=T0)
    first.claim(KEY, "idem-1", now=T0)
    del first  # no close, no record: as if the process died here
    reopened = SqliteLedger(path)
    (doubt,) = reopened.in_doubt()
    assert (doubt.key, doubt.identity, doubt.attempts) == (KEY, "idem-1", 1)
    reopened.close()


def test_due_deliveries_and_counts(ledger: Ledger) -> None:
    keys = [DeliveryKey(f"p{i}", "outbox") for i in range(4)]
    for i, key in enumerate(keys):
        ledger.plan(key, later(i * 10), "h", now=T0)
    ledger.claim(keys[0], "id", now=T0)
    ledger.record_retry(keys[0], later(25), "429", now=T0)
    due = [d.key for d in ledger.iter_due(later(20))]
    assert due == [keys[1], keys[2]]  # keys[0] waits until its retry time
    assert {d.key for d in ledger.iter_due(later(25))} == {keys[0], keys[1], keys[2]}
    soon = ledger.deliveries(states=CLAIMABLE_STATES, due_by=later(10))
    assert [d.key for d in soon] == [keys[1]]
    assert ledger.counts()[DeliveryState.PLANNED] == 3
    assert ledger.counts()[DeliveryState.RETRY] == 1


def test_states_of_some_posts_only(ledger: Ledger) -> None:
    for i in range(3):
        for part in range(2):
            ledger.plan(DeliveryKey(f"p{i}", "outbox", part), T0, "h", T0)
    ledger.claim(DeliveryKey("p1", "outbox"), "i", T0)
    wanted = [f"p{i}" for i in range(1, 3)] + [f"absent{i}" for i in range(600)]
    assert ledger.states_of(wanted) == {
        ("p1", "outbox"): {DeliveryState.SENDING, DeliveryState.PLANNED},
        ("p2", "outbox"): {DeliveryState.PLANNED},
    }
    assert ledger.states_of([]) == {}


def test_history_in_order(ledger: Ledger) -> None:
    ledger.plan(KEY, T0, "h", now=T0)
    ledger.claim(KEY, "id", now=T0)
    ledger.record_retry(KEY, later(1), "503 Service Unavailable", now=T0)
    ledger.claim(KEY, "id", now=later(1))
    ledger.record_published(KEY, "1", None, now=later(1))
    events = ledger.events(post_id="peru-article")
    assert [(e.state.value, e.attempt) for e in events] == [
        ("planned", 0),
        ("sending", 1),
        ("retry", 1),
        ("sending", 2),
        ("published", 2),
    ]
    assert events[2].detail == "503 Service Unavailable"


def test_concurrent_claims_have_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    setup = SqliteLedger(path)
    keys = [DeliveryKey(f"p{i}", "outbox") for i in range(50)]
    for key in keys:
        setup.plan(key, T0, "h", now=T0)
    setup.close()
    wins: list[DeliveryKey] = []
    lock = threading.Lock()

    def worker() -> None:
        ledger = SqliteLedger(path)
        for key in keys:
            if ledger.claim(key, "id", now=T0) is not None:
                with lock:
                    wins.append(key)
        ledger.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == sorted(keys)  # each claimed exactly once


def test_migrations_are_named_and_a_newer_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = SqliteLedger(path)
    assert ledger.migrations() == [
        "0001_deliveries_and_events",
        "0002_edits_reported",
        "0003_progress",
        "0004_pauses",
        "0005_alerts",
        "0006_daemons",
        "0007_account_holds",
    ]
    ledger.close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES ('9999_from_the_future', 'x')")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="newer postscheduler"):
        SqliteLedger(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        SqliteLedger(path)


def test_second_daemon_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    a, b = SqliteLedger(path), SqliteLedger(path)
    with (
        a.acquire_daemon_lock(),
        pytest.raises(LedgerLockedError, match="another postscheduler daemon"),
        b.acquire_daemon_lock(),
    ):
        pass
    with b.acquire_daemon_lock():  # released with the first daemon
        pass
    a.close()
    b.close()


def test_lock_is_released_when_its_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from postscheduler.ledger.sqlite import SqliteLedger\n"
            f"with SqliteLedger({str(path)!r}).acquire_daemon_lock():\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    second = SqliteLedger(path)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(LedgerLockedError, match=f"pid {holder.pid}"),
            second.acquire_daemon_lock(),
        ):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    with second.acquire_daemon_lock():
        pass
    second.close()


def test_open_ledger_paths(tmp_path: Path) -> None:
    ledger = open_ledger(".postscheduler/ledger.db", tmp_path)
    assert (tmp_path / ".postscheduler" / "ledger.db").exists()
    ledger.close()


def test_a_postgresql_ledger_that_cannot_be_reached_says_so_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("psycopg", reason="psycopg is a test extra")
    canary = "canary-pg-PASSWORD-31"
    monkeypatch.setenv("PG_PASSWORD", canary)
    with pytest.raises(LedgerError) as info:  # port 9 on loopback: nothing listens
        open_ledger("postgresql://campaign:${PG_PASSWORD}@127.0.0.1:9/ledger", tmp_path)
    assert "cannot open the ledger postgresql://campaign:***@127.0.0.1:9/ledger" in str(info.value)
    assert canary not in str(info.value)
    monkeypatch.delenv("PG_PASSWORD")
    with pytest.raises(LedgerError, match=r"refers to \$\{PG_PASSWORD\}, which is not set"):
        open_ledger("postgresql://campaign:${PG_PASSWORD}@127.0.0.1:9/ledger", tmp_path)


def test_a_person_s_send_now_survives_replanning_until_the_post_time_changes(
    ledger: Ledger,
) -> None:
    ledger.plan(KEY, later(600), "h", now=T0)
    ledger.requeue(KEY, T0, "publish --now", now=T0)
    assert ledger.plan(KEY, later(600), "edited words", now=T0).due_at == T0
    moved = ledger.plan(KEY, later(900), "edited words", now=T0)
    assert (moved.due_at, moved.scheduled_at) == (later(900), later(900))


def test_an_edit_is_reported_once(ledger: Ledger) -> None:
    key = DeliveryKey("p", "a")
    assert ledger.note_edit_reported(key, "h2", T0)
    assert not ledger.note_edit_reported(key, "h2", T0)  # the same edit: already said
    assert ledger.note_edit_reported(key, "h3", T0)  # a new edit: said again


def test_progress_is_kept_across_attempts_and_forgotten_when_the_words_change(
    ledger: Ledger,
) -> None:
    """A container id written before the publishing step survives a retry (the next attempt
    asks about it); new words start from nothing."""
    ledger.plan(KEY, T0, "h1", now=later(-1))
    assert ledger.record_progress(KEY, "container 1", now=T0).progress is None  # not in flight
    ledger.claim(KEY, "id-1", now=T0)
    assert ledger.record_progress(KEY, "container 1", now=T0).progress == "container 1"
    ledger.record_retry(KEY, later(1), "503", now=T0)
    assert ledger.get(KEY).progress == "container 1"  # type: ignore[union-attr]
    assert ledger.claim(KEY, "id-2", now=later(1)).progress == "container 1"  # type: ignore[union-attr]
    ledger.record_retry(KEY, later(2), "503", now=later(1))
    assert ledger.plan(KEY, T0, "h2", now=later(1)).progress is None  # the words changed
    ledger.claim(KEY, "id-3", now=later(2))
    ledger.record_progress(KEY, "container 2", now=later(2))
    ledger.record_unconfirmed(KEY, "lost", now=later(2))
    # A person's resend keeps it: the container (or LinkedIn's duplicate check) says whether
    # the post is already out.
    assert ledger.requeue(KEY, later(3), "resolve --resend", now=later(3)).progress == "container 2"


def test_record_progress_of_an_unknown_delivery_is_a_ledger_error(ledger: Ledger) -> None:
    with pytest.raises(LedgerError):
        ledger.record_progress(KEY, "container 1", now=T0)


def test_a_pause_holds_its_scope_until_its_time_or_a_resume(ledger: Ledger) -> None:
    assert ledger.pauses(T0) == [] and ledger.paused("x", T0) is None
    ledger.pause("x", later(60), "a day of mourning", now=T0)
    assert ledger.paused("x", later(1)).reason == "a day of mourning"  # type: ignore[union-attr]
    assert ledger.paused("mastodon", later(1)) is None  # only its account
    assert ledger.paused("x", later(60)) is None  # over at its time
    everything = ledger.pause(None, None, "breaking news", now=later(2))
    assert ledger.paused("mastodon", later(90)) == everything  # until a resume
    assert ledger.resume("x", now=later(3)) is True and ledger.resume("x", later(3)) is False
    assert [p.account for p in ledger.pauses(later(4))] == [None]
    assert ledger.resume(None, now=later(5)) is True
    assert ledger.pauses(later(5)) == []


LEASE = dt.timedelta(seconds=30)


def test_a_claim_carries_its_daemon_and_needs_a_live_lease(ledger: Ledger) -> None:
    ledger.register("d1", "host-a", 101, LEASE, T0)
    ledger.plan(KEY, T0, "h", T0)
    claimed = ledger.claim(KEY, "id-1", T0)
    assert claimed is not None and claimed.owner == "d1"
    (alive,) = ledger.daemons(T0)
    assert (alive.id, alive.host, alive.pid, alive.in_flight) == ("d1", "host-a", 101, 1)
    published = ledger.record_published(KEY, "r1", "https://x.test/1", later(0.1))
    assert published.owner is None  # out of flight
    other = DeliveryKey("other", "outbox")
    ledger.plan(other, T0, "h", T0)
    with pytest.raises(LeaseLostError, match="lease"):  # silent for longer than the lease
        ledger.claim(other, "id-2", T0 + LEASE)
    assert ledger.get(other).state is DeliveryState.PLANNED  # type: ignore[union-attr]
    assert ledger.heartbeat(T0 + LEASE) is False  # it had run out: registered anew
    assert ledger.claim(other, "id-2", T0 + LEASE) is not None
    assert ledger.heartbeat(T0 + LEASE + dt.timedelta(seconds=5)) is True
    ledger.unregister(later(2))
    assert ledger.daemons(later(2)) == []


def test_a_restarted_daemon_finds_what_it_left_in_flight_at_once(ledger: Ledger) -> None:
    ledger.register("d1", "host-a", 101, LEASE, T0)
    ledger.plan(KEY, T0, "h", T0)
    ledger.claim(KEY, "id-1", T0)
    # kill -9, and the same checkout's daemon starts again before the old lease ran out
    ledger.register("d1", "host-a", 202, LEASE, later(0.1))
    (adopted,) = ledger.adopt_in_doubt(later(0.1))
    assert (adopted.key, adopted.owner) == (KEY, "d1")
    assert ledger.adopt_in_doubt(later(0.1)) == []  # adopted once


def test_a_live_registration_of_an_id_is_replaced_only_when_allowed(
    make_ledger: Callable[[], Ledger],
) -> None:
    """A second process registering a live daemon's id (a copied state folder) is refused
    on a shared ledger, leaving the first's registration and its claims as they were; an
    id whose lease ran out is taken without asking. One daemon at a time (SQLite) never
    asks: the daemon lock already keeps a second process out."""
    first, second = make_ledger(), make_ledger()
    first.register("d1", "host-a", 101, LEASE, T0)
    first.plan(KEY, T0, "h", T0)
    first.claim(KEY, "id-1", T0)
    asked: list[tuple[str, int]] = []

    def refuse(host: str, pid: int) -> bool:
        asked.append((host, pid))
        return False

    if not second.shared:
        second.register("d1", "host-b", 202, LEASE, later(0.1), refuse)
        assert asked == []
        return
    with pytest.raises(DaemonIdInUseError) as refused:
        second.register("d1", "host-b", 202, LEASE, later(0.1), refuse)
    assert (refused.value.host, refused.value.pid, asked) == ("host-a", 101, [("host-a", 101)])
    ((alive, sending),) = [(d, d.in_flight) for d in second.daemons(later(0.1))]
    assert (alive.host, alive.pid, sending) == ("host-a", 101, 1)
    asked.clear()
    second.register("d1", "host-b", 202, LEASE, T0 + LEASE, refuse)  # the lease ran out
    assert asked == []
    (alive,) = second.daemons(T0 + LEASE)
    assert (alive.host, alive.pid) == ("host-b", 202)


def test_a_live_daemons_deliveries_are_never_adopted(postgres: Any) -> None:
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    a, b = PostgresLedger(url), PostgresLedger(url)
    try:
        with a.acquire_daemon_lock(), b.acquire_daemon_lock():  # shared: no lock
            a.register("a", "host-a", 1, LEASE, T0)
            b.register("b", "host-b", 2, LEASE, T0)
            a.plan(KEY, T0, "h", T0)
            assert a.claim(KEY, "id-1", T0) is not None
            assert b.claim(KEY, "id-1", T0) is None  # exactly one wins
            assert b.adopt_in_doubt(later(0.2)) == []  # a is alive: not b's to touch
            # b may not move a's delivery either (a late answer after a takeover)
            assert b.record_unconfirmed(KEY, "?", later(0.2)).state is DeliveryState.SENDING
            assert [d.id for d in b.daemons(later(0.2))] == ["a", "b"]
            b.heartbeat(T0 + LEASE)
            (adopted,) = b.adopt_in_doubt(T0 + LEASE)  # a silent for its whole lease
            assert adopted.owner == "b"
            assert a.adopt_in_doubt(T0 + LEASE) == []  # a came back: b has it now
            assert a.record_progress(KEY, "container 1", T0 + LEASE).progress is None
            resolved = b.record_unconfirmed(KEY, "asked after a's lease ran out", T0 + LEASE)
            assert resolved.state is DeliveryState.UNCONFIRMED
    finally:
        a.close()
        b.close()


def test_an_account_is_held_for_min_gap_and_by_a_rate_limit(ledger: Ledger) -> None:
    gap = dt.timedelta(minutes=5)
    assert ledger.reserve_account("x", dt.timedelta(0), T0) is None  # no gap: nothing held
    assert ledger.reserve_account("x", dt.timedelta(0), T0) is None
    assert ledger.reserve_account("x", gap, T0) is None
    assert ledger.reserve_account("x", gap, later(1)) == (T0 + gap, "min_gap")
    assert ledger.reserve_account("outbox", gap, later(1)) is None  # per account
    assert ledger.reserve_account("x", gap, T0 + gap) is None  # free again, and held again
    ledger.hold_account("x", later(60), "429 rate limited")
    ledger.hold_account("x", later(30), "a shorter wait does not shorten it")
    assert ledger.reserve_account("x", dt.timedelta(0), later(20)) == (
        later(60),
        "429 rate limited",
    )
    assert ledger.reserve_account("x", dt.timedelta(0), later(60)) is None


def test_claim_unless_held_asks_the_pause_then_the_account_then_claims(ledger: Ledger) -> None:
    """What a delivery asks just before it is sent, in one round trip: each hold, in
    order, keeps the row claimable; only a free account is reserved and claimed."""
    gap = dt.timedelta(minutes=5)
    ledger.plan(KEY, T0, "h", T0)
    row, pause = ledger.get_unless_paused(KEY, T0)
    assert row is not None and row.state is DeliveryState.PLANNED and pause is None
    assert ledger.get_unless_paused(DeliveryKey("gone", "outbox"), T0) == (None, None)
    ledger.pause("outbox", later(10), "breaking news", now=T0)
    held = ledger.claim_unless_held(KEY, "id", gap, later(1))
    assert held.pause is not None and held.pause.reason == "breaking news"
    assert held.claimed is None and held.held is None
    assert ledger.get_unless_paused(KEY, later(1))[1] == held.pause
    # the pause was asked first: nothing was reserved for the account meanwhile
    assert ledger.reserve_account("outbox", dt.timedelta(0), later(1)) is None
    ledger.hold_account("outbox", later(30), "429 rate limited")
    waiting = ledger.claim_unless_held(KEY, "id", gap, later(10))
    assert waiting.held == (later(30), "429 rate limited") and waiting.claimed is None
    assert ledger.get(KEY).state is DeliveryState.PLANNED  # type: ignore[union-attr]
    won = ledger.claim_unless_held(KEY, "id", gap, later(30))
    assert won.claimed is not None and won.claimed.state is DeliveryState.SENDING
    assert won.pause is None and won.held is None
    assert ledger.reserve_account("outbox", gap, later(31)) == (later(30) + gap, "min_gap")
    # not claimable any more (in flight): neither claimed nor held
    assert ledger.claim_unless_held(KEY, "id", dt.timedelta(0), later(60)) == ClaimAttempt()


def at_once(ledgers: list[Any], call: Callable[[Any], Any]) -> list[Any]:
    """``call`` on each ledger (each its own connection), on threads released together;
    the results in order. The ledgers are closed."""
    results: list[Any] = [None] * len(ledgers)
    start = threading.Barrier(len(ledgers))

    def run(i: int) -> None:
        start.wait()
        results[i] = call(ledgers[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ledgers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ledger in ledgers:
        ledger.close()
    return results


def test_reserving_one_account_at_once_has_one_winner(postgres: Any) -> None:
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    ledgers = [PostgresLedger(url) for _ in range(4)]
    won = at_once(ledgers, lambda ledger: ledger.reserve_account("x", LEASE, T0) is None)
    assert won.count(True) == 1


def test_adopting_races_have_one_winner(postgres: Any) -> None:
    """Daemons adopting the same dead daemon's deliveries at once each get a share, and no
    delivery is adopted twice."""
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    dead = PostgresLedger(url)
    dead.register("dead", "h", 1, LEASE, T0)
    keys = [DeliveryKey(f"p{i}", "outbox") for i in range(40)]
    with dead.transaction():
        for key in keys:
            dead.plan(key, T0, "h", T0)
            dead.claim(key, "i", T0)
    dead.close()
    adopters = [PostgresLedger(url) for _ in range(4)]
    now = T0 + LEASE
    for i, ledger in enumerate(adopters):
        ledger.register(f"live{i}", "h", i, LEASE, now)
    got = at_once(adopters, lambda ledger: [row.key for row in ledger.adopt_in_doubt(now)])
    everything = [key for share in got for key in share]
    assert sorted(everything) == sorted(keys)


def test_a_postgresql_restart_is_a_ledger_error_then_the_connection_comes_back(
    postgres: Any,
) -> None:
    from postscheduler.ledger.postgres import PostgresLedger

    ledger = PostgresLedger(postgres.new_database())
    try:
        key = DeliveryKey("p", "outbox")
        ledger.plan(key, T0, "h", T0)
        postgres.stop("immediate")
        try:
            # A transaction is what the daemon's group commit opens.
            with pytest.raises(LedgerError, match="the ledger postgresql://"), ledger.transaction():
                ledger.get(key)
            with pytest.raises(LedgerError):
                ledger.get(key)
        finally:
            postgres.start()
        got = ledger.get(key)
        assert got is not None and got.state is DeliveryState.PLANNED
    finally:
        ledger.close()


def test_run_once_and_status_on_a_postgresql_ledger(postgres: Any, tmp_path: Path) -> None:
    url = postgres.new_database()
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "p.yaml").write_text("id: p\nat: 2020-01-01 09:00\ntext: Old.\n")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (tmp_path / "posts" / "q.yaml").write_text(f"id: q\nat: {now}\ntext: Now.\n")
    (tmp_path / "scheduler.yaml").write_text(
        f'ledger: "{url}"\naccounts:\n  outbox: {{platform: outbox, path: outbox}}\n'
        "defaults: {accounts: [outbox]}\n"
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        config = str(tmp_path / "scheduler.yaml")
        return subprocess.run(
            [sys.executable, "-m", "postscheduler", *args, "-c", config],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = cli("run", "--once")
    assert "published: q → outbox" in done.stdout and "skipped: p → outbox" in done.stdout, done
    status = cli("status")
    assert "published: 1" in status.stdout and "skipped: 1" in status.stdout, status.stderr


def test_a_postgresql_connection_notices_a_silent_network_within_a_lease(postgres: Any) -> None:
    """Keep-alives and a TCP user timeout, unless the ledger URL sets its own."""
    from postscheduler.ledger.postgres import CONNECTION_DEFAULTS, PostgresLedger

    def options(ledger: PostgresLedger) -> dict[str, str]:
        info = ledger._db._connection.pgconn.info  # type: ignore[attr-defined]
        return {o.keyword.decode(): (o.val or b"").decode() for o in info}

    url = postgres.new_database()
    default, tuned = PostgresLedger(url), PostgresLedger(f"{url}?keepalives_idle=42")
    try:
        assert {k: options(default)[k] for k in CONNECTION_DEFAULTS} == CONNECTION_DEFAULTS
        assert options(tuned)["keepalives_idle"] == "42"
        assert options(tuned)["tcp_user_timeout"] == CONNECTION_DEFAULTS["tcp_user_timeout"]
        # Together they give up on a dead peer well before the default lease of 60 s.
        idle, every, count = (
            int(CONNECTION_DEFAULTS[k])
            for k in ("keepalives_idle", "keepalives_interval", "keepalives_count")
        )
        assert idle + every * count < 60
    finally:
        default.close()
        tuned.close()


def test_one_daemon_at_a_time_sends_a_channels_alerts(postgres: Any) -> None:
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    a, b = PostgresLedger(url), PostgresLedger(url)
    try:
        assert a.take_alert_turn("team")
        assert not b.take_alert_turn("team")  # a is sending
        assert b.take_alert_turn("email")  # another channel: its own turn
        a.end_alert_turn("team")
        assert b.take_alert_turn("team")
        b.end_alert_turn("team")
        assert a.take_alert_turn("team")
        a.close()  # a dies mid-send: its turn goes with its connection
        assert b.take_alert_turn("team")
    finally:
        a.close()
        b.close()


def test_a_ledger_of_one_daemon_always_gives_the_alert_turn(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    try:
        assert ledger.take_alert_turn("team") and ledger.take_alert_turn("team")
        ledger.end_alert_turn("team")
    finally:
        ledger.close()


def test_the_clock_skew_is_told_against_the_database_server(postgres: Any, tmp_path: Path) -> None:
    from postscheduler.ledger.postgres import PostgresLedger

    ledger = PostgresLedger(postgres.new_database())
    try:
        now = dt.datetime.now(dt.UTC)
        skew = ledger.clock_skew(now)
        assert skew is not None and abs(skew) < dt.timedelta(seconds=5)  # the same machine
        ahead = ledger.clock_skew(now + dt.timedelta(minutes=5))
        assert ahead is not None and dt.timedelta(minutes=4) < ahead < dt.timedelta(minutes=6)
    finally:
        ledger.close()
    local = SqliteLedger(tmp_path / "ledger.db")
    try:
        assert local.clock_skew(dt.datetime.now(dt.UTC)) is None  # no other clock
    finally:
        local.close()
