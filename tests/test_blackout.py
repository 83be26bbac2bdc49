"""Blackout windows (nights, a day of mourning) and the burst guard (at most N an hour)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import pytest

from postscheduler.config import load_settings
from postscheduler.delivery.engine import Engine
from postscheduler.errors import ConfigError
from postscheduler.ledger import Alert, DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.posts.rules import validate

from .conftest import Project
from .test_engine import Clock, Scripted

MADRID = dt.timezone(dt.timedelta(hours=1))  # CET, for writing expected instants

CONFIG = """\
timezone: Europe/Madrid
ledger: ledger.db
accounts:
  a: {platform: outbox, path: out-a}
  b: {platform: outbox, path: out-b}
defaults: {accounts: [a, b]}
publishing: {late_grace: 30m}
blackout:
  - {name: nights, from: "22:00", until: "07:00"}
  - {name: mourning, from: 2027-01-20, until: 2027-01-21, accounts: [a], action: refuse}
  - {name: breakfast, from: "07:00", until: "08:00", accounts: [b]}
"""


@pytest.fixture
def project(make_project: Callable[[str], Project]) -> Project:
    return make_project(CONFIG)


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=MADRID)


def test_a_night_window_holds_until_morning_and_back_to_back_windows_chain(
    project: Project,
) -> None:
    cfg = project.settings().config
    assert cfg.release_time(local("2027-01-14 23:30"), "a") == local("2027-01-15 07:00")
    assert cfg.release_time(local("2027-01-15 06:59"), "a") == local("2027-01-15 07:00")
    assert cfg.release_time(local("2027-01-15 07:00"), "a") == local("2027-01-15 07:00")
    assert cfg.release_time(local("2027-01-14 21:59"), "a") == local("2027-01-14 21:59")
    # b's breakfast window begins as the night ends: held to its end.
    assert cfg.release_time(local("2027-01-14 23:30"), "b") == local("2027-01-15 08:00")


def test_a_night_window_across_the_change_to_summer_time(project: Project) -> None:
    cfg = project.settings().config
    summer = dt.timezone(dt.timedelta(hours=2))
    # 2027-03-28: clocks go from 02:00 to 03:00 in Madrid; the night still ends at 07:00 CEST.
    held = cfg.release_time(local("2027-03-27 23:00"), "a")
    assert held == dt.datetime(2027, 3, 28, 7, 0, tzinfo=summer)


def test_validate_refuses_a_post_in_a_refusing_window_and_warns_of_a_hold(
    project: Project,
) -> None:
    project.write("m.yaml", "id: m\nat: 2027-01-20 12:00\ntext: A statement.\n")
    project.write("n.yaml", "id: n\nat: 2027-01-14 23:00\ntext: Late news.\n")
    findings = validate(project.settings(), now=local("2027-01-10 12:00")).findings
    refused = [f for f in findings if f.code == "in-blackout"]
    assert [(f.post_id, f.account, f.line, f.is_error) for f in refused] == [("m", "a", 2, True)]
    assert "'mourning' for a (2027-01-20 – 2027-01-21)" in refused[0].message
    held = sorted((f.post_id, f.account, f.message) for f in findings if f.code == "blackout-hold")
    assert [(p, a) for p, a, _ in held] == [("n", "a"), ("n", "b")]
    assert "goes to a at 2027-01-15 07:00" in held[0][2]
    assert "goes to b at 2027-01-15 08:00" in held[1][2]


def engine_for(
    project: Project, clock: Clock, alerts: list[Alert] | None = None, **pubs: Scripted
) -> Engine:
    settings = project.settings()
    engine = Engine(
        settings,
        SqliteLedger(project.root / "ledger.db"),
        clock=clock,
        publishers=pubs,
        notify=(alerts.append if alerts is not None else None),
    )
    engine.load(validate(settings, now=clock()))
    return engine


def test_a_post_due_in_the_night_goes_at_its_end_and_is_not_late(project: Project) -> None:
    project.write("n.yaml", "id: n\nat: 2027-01-14 23:00\ntext: Late news.\naccounts: [a]\n")
    clock = Clock(local("2027-01-14 23:00").astimezone(dt.UTC))
    a = Scripted()
    engine = engine_for(project, clock, a=a)
    row = engine.ledger.get(DeliveryKey("n", "a"))
    assert row is not None and row.due_at == local("2027-01-15 07:00")
    asyncio.run(engine.run_due())
    assert a.calls == []
    clock.now = local("2027-01-15 07:00").astimezone(dt.UTC)
    asyncio.run(engine.run_due())
    assert [c.key.post_id for c in a.calls] == ["n"]
    assert engine.ledger.get(DeliveryKey("n", "a")).state is DeliveryState.PUBLISHED  # type: ignore[union-attr]


def test_a_retry_that_falls_in_a_window_waits_for_its_end(project: Project) -> None:
    from postscheduler.publishers import TransientError

    project.write("p.yaml", "id: p\nat: 2027-01-14 21:59\ntext: Hi.\naccounts: [a]\n")
    clock = Clock(local("2027-01-14 21:59").astimezone(dt.UTC))
    a = Scripted([TransientError("503")])
    engine = engine_for(project, clock, a=a)
    asyncio.run(engine.run_due())  # fails; its retry falls after 22:00
    clock.now = local("2027-01-14 22:30").astimezone(dt.UTC)
    again = asyncio.run(engine.deliver("p", "a"))
    assert again == local("2027-01-15 07:00") and len(a.calls) == 1


def test_the_burst_guard_holds_what_is_over_the_hour_and_alerts(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project(
        "timezone: UTC\nledger: ledger.db\naccounts:\n  a: {platform: outbox, max_per_hour: 3}\n"
        "defaults: {accounts: [a]}\npublishing: {late_grace: 30m}\n"
    )
    for i in range(5):
        project.write(f"p{i}.yaml", f"id: p{i}\nat: 2027-01-14 09:0{i}\ntext: Post {i}.\n")
    project.write("t.yaml", "id: t\nat: 2027-01-14 09:00\ntext: One.\nthread: [Two., Three.]\n")
    start = dt.datetime(2027, 1, 14, 9, 5, tzinfo=dt.UTC)
    clock, alerts, a = Clock(start), [], Scripted()
    engine = engine_for(project, clock, alerts, a=a)
    asyncio.run(engine.run_due())
    sent = [(c.key.post_id, c.key.part) for c in a.calls]
    assert sent == [("p0", 0), ("t", 0), ("t", 1), ("t", 2), ("p1", 0)]  # a thread is one post
    held = [engine.ledger.get(DeliveryKey(f"p{i}", "a")) for i in (2, 3, 4)]
    assert all(r is not None and r.state is DeliveryState.PLANNED for r in held)
    assert all(r.due_at == start + dt.timedelta(hours=1) for r in held)  # type: ignore[union-attr]
    assert "held by the burst guard: 3 posts" in (
        engine.ledger.events(post_id="p2")[-1].detail or ""
    )
    assert [x.kind for x in alerts] and {x.dedupe for x in alerts} == {alerts[0].dedupe}
    # An hour later they go, in order, not skipped as late; a new engine (a restart) counts
    # what went out before it.
    clock.now = start + dt.timedelta(hours=1)
    restarted = engine_for(project, clock, a=a)
    asyncio.run(restarted.run_due())
    assert [c.key.post_id for c in a.calls[5:]] == ["p2", "p3", "p4"]


def test_the_burst_guard_counts_every_daemon_s_sends_on_a_shared_ledger(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project(
        "timezone: UTC\nledger: ledger.db\naccounts:\n  a: {platform: outbox, max_per_hour: 2}\n"
        "defaults: {accounts: [a]}\npublishing: {late_grace: 30m}\n"
    )
    for i in range(3):
        project.write(f"p{i}.yaml", f"id: p{i}\nat: 2027-01-14 09:0{i}\ntext: Post {i}.\n")
    clock = Clock(dt.datetime(2027, 1, 14, 9, 5, tzinfo=dt.UTC))
    first, second = Scripted(), Scripted()
    one, other = engine_for(project, clock, a=first), engine_for(project, clock, a=second)
    for engine in (one, other):
        engine.ledger.shared = True  # as on PostgreSQL: two daemons, one ledger
    asyncio.run(one.deliver("p0", "a"))
    asyncio.run(other.deliver("p2", "a"))  # the other daemon's send, after one counted
    asyncio.run(one.deliver("p1", "a"))
    assert [c.key.post_id for c in first.calls] == ["p0"]
    assert [c.key.post_id for c in second.calls] == ["p2"]
    held = one.ledger.get(DeliveryKey("p1", "a"))
    assert (
        held is not None
        and held.state is DeliveryState.PLANNED
        and "burst" in (one.ledger.events(post_id="p1")[-1].detail or "")
    )


def test_blackout_mistakes_are_clear_configuration_errors(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    cases = {
        '{name: x, from: "22:00", until: 2027-01-01}': "both be times of day",
        "{name: x, from: 2027-01-02, until: 2027-01-01}": "until is not after from",
        '{name: x, from: "22:00", until: "07:00", accounts: [nope]}': "account 'nope'",
        '{name: x, from: "22:00", until: "22:00"}': "the window is empty",
    }
    for window, expected in cases.items():
        (root / "scheduler.yaml").write_text(f"blackout:\n  - {window}\n")
        with pytest.raises(ConfigError) as info:
            load_settings(root / "scheduler.yaml", environ={})
        assert expected in "".join(f.message for f in info.value.findings), window
