"""publish --now, retry, resolve and accounts check, through the CLI."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from postscheduler.cli import app
from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger

from .conftest import Project

CONFIG = """\
timezone: UTC
posts_dir: posts
ledger: ledger.db
accounts:
  outbox: {platform: outbox, path: outbox}
  x:
    platform: x
    consumer_key: ${X_KEY}
    consumer_secret: ${X_SECRET}
    access_token: ${X_TOKEN}
    access_token_secret: ${X_TOKEN_SECRET}
defaults: {accounts: [outbox]}
"""

runner = CliRunner()
NOW = dt.datetime.now(dt.UTC)
POST_AT = dt.datetime(2099, 1, 1, 9, 0, tzinfo=dt.UTC)  # the time in future.yaml


@pytest.fixture
def project(make_project: Callable[[str], Project]) -> Project:
    p = make_project(CONFIG)
    p.write("future.yaml", "id: future\nat: 2099-01-01 09:00\ntext: Far ahead.\nthread: [Two.]\n")
    return p


def cli(project: Project, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "-c", str(project.config_path)], catch_exceptions=False)


def ledger(project: Project) -> SqliteLedger:
    return SqliteLedger(project.root / "ledger.db")


def test_publish_now_sends_a_future_post_once(project: Project) -> None:
    result = cli(project, "publish", "future", "--now")
    assert result.exit_code == 0, result.output
    assert "future → outbox: published" in result.stdout
    assert "future → outbox part 2: published" in result.stdout
    assert len(list((project.root / "outbox").glob("*.json"))) == 2
    again = cli(project, "publish", "future", "--now")
    assert again.exit_code == 0
    assert len(list((project.root / "outbox").glob("*.json"))) == 2  # nothing sent twice


def test_publish_needs_now_and_a_valid_post(project: Project) -> None:
    assert cli(project, "publish", "future").exit_code == 2
    project.write("bad.yaml", "id: bad\nat: 2099-01-01 09:00\ntext: hi\naccounts: [nope]\n")
    result = cli(project, "publish", "bad", "--now")
    assert result.exit_code == 2 and "has errors" in result.stderr
    result = cli(project, "publish", "futur", "--now")
    assert result.exit_code == 2 and "did you mean 'future'" in result.stderr
    result = cli(project, "publish", "future", "--now", "--account", "x")
    assert result.exit_code == 2 and "does not go to 'x'" in result.stderr


def test_retry_failed(project: Project) -> None:
    cli(project, "validate")
    with ledger(project) as db:
        key = DeliveryKey("future", "outbox")
        db.plan(key, POST_AT, "h", NOW)
        db.claim(key, "id", NOW)
        db.record_failed(key, "500 broken", NOW)
    assert cli(project, "status").exit_code == 1
    assert "FAILED: future → outbox after 1 attempts: 500 broken" in cli(project, "status").stdout
    result = cli(project, "retry", "--failed")
    assert result.exit_code == 0, result.output
    assert "future → outbox: published" in result.stdout
    assert cli(project, "retry", "--failed").exit_code == 2  # nothing failed any more
    assert cli(project, "retry").exit_code == 2


def test_resolve_unconfirmed(project: Project) -> None:
    with ledger(project) as db:
        for post in ("a", "b"):
            key = DeliveryKey("future", "outbox", 0 if post == "a" else 1)
            db.plan(key, POST_AT, "h", NOW)
            db.claim(key, "id", NOW)
            db.record_unconfirmed(key, "connection lost", NOW)
    result = cli(project, "publish", "future", "--now")
    assert result.exit_code == 2 and "resolve future --account outbox" in result.stderr
    assert cli(project, "resolve", "future", "--account", "outbox").exit_code == 2
    result = cli(project, "resolve", "future", "--account", "outbox", "--sent")
    assert result.exit_code == 0, result.output
    with ledger(project) as db:
        assert all(r.state is DeliveryState.PUBLISHED for r in db.deliveries(post_id="future"))
        assert db.events(post_id="future")[-1].detail == "confirmed by hand"
    assert not (project.root / "outbox").exists()  # --sent sends nothing


def test_resolve_resend(project: Project) -> None:
    with ledger(project) as db:
        key = DeliveryKey("future", "outbox")
        db.plan(key, POST_AT, "h", NOW)
        db.claim(key, "id", NOW)
        db.record_unconfirmed(key, "connection lost", NOW)
    result = cli(project, "resolve", "future", "--account", "outbox", "--resend")
    assert result.exit_code == 0, result.output
    assert (project.root / "outbox" / "future.outbox.1.json").exists()


def test_accounts_check(project: Project) -> None:
    result = cli(project, "accounts", "check")
    assert result.exit_code == 1
    assert "ok    outbox (outbox): folder" in result.stdout
    assert "FAIL  x (x):" in result.stdout
    assert cli(project, "accounts", "check", "--account", "outbox").exit_code == 0
    assert cli(project, "accounts", "check", "--account", "nope").exit_code == 2


def test_status_shows_thread_parts_waiting_behind_an_unconfirmed_one(project: Project) -> None:
    with ledger(project) as db:
        first, second = DeliveryKey("future", "outbox", 0), DeliveryKey("future", "outbox", 1)
        db.plan(first, POST_AT, "h", NOW)
        db.plan(second, POST_AT, "h", NOW)
        db.claim(first, "id", NOW)
        db.record_unconfirmed(first, "connection lost", NOW)
    out = cli(project, "status").stdout
    assert "UNCONFIRMED: future → outbox after 1 attempts: connection lost" in out
    assert "WAITING: future → outbox part 2, until the part before it is settled" in out
    assert "next:" not in out


def test_validate_warns_when_a_published_post_was_edited(project: Project) -> None:
    project.write("now.yaml", "id: now\nat: 2020-01-01 09:00\ntext: As sent.\n")
    assert cli(project, "publish", "now", "--now").exit_code == 0
    project.write("now.yaml", "id: now\nat: 2020-01-01 09:00\ntext: Corrected.\n")
    result = cli(project, "validate", "--format", "json")
    assert result.exit_code == 0  # a warning, not an error
    codes = {f["code"]: f for f in json.loads(result.stdout)}
    changed = codes["published-changed"]
    assert (changed["post_id"], changed["account"], changed["line"]) == ("now", "outbox", 3)


def test_status_without_a_ledger_creates_nothing(project: Project) -> None:
    for command in ("status", "history"):
        result = cli(project, command)
        assert result.exit_code == 2 and "no ledger at" in result.stderr
    assert not (project.root / "ledger.db").exists()


def test_status_lists_the_daemons_alive_and_what_each_has_in_flight(project: Project) -> None:
    with ledger(project) as db:
        key = DeliveryKey("future", "outbox")
        db.plan(key, POST_AT, "h", NOW)
    assert "no daemon running" in cli(project, "status").stdout
    with ledger(project) as db:
        db.register("box-1a2b", "box", 4242, dt.timedelta(minutes=5), dt.datetime.now(dt.UTC))
        db.claim(key, "id", dt.datetime.now(dt.UTC))
        out = cli(project, "status").stdout
        assert "daemon box-1a2b on box (pid 4242): last heartbeat " in out
        assert "1 in flight" in out and "no daemon running" not in out


def test_publish_now_beside_daemons_on_a_shared_ledger_leaves_the_sending_to_them(
    make_project: Callable[[str], Project], postgres: object
) -> None:
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()  # type: ignore[attr-defined]
    project = make_project(CONFIG.replace("ledger: ledger.db", f"ledger: {url}"))
    project.write("future.yaml", "id: future\nat: 2099-01-01 09:00\ntext: Far ahead.\n")
    with PostgresLedger(url) as db:
        db.register("other-host-1", "other", 7, dt.timedelta(minutes=5), dt.datetime.now(dt.UTC))
        result = cli(project, "publish", "future", "--now")
        assert result.exit_code == 0, result.output
        assert not (project.root / "outbox").exists()  # the live daemon sends it
        (row,) = db.deliveries(post_id="future")
        assert row.state is DeliveryState.PLANNED and row.due_at <= dt.datetime.now(dt.UTC)
        db.unregister(dt.datetime.now(dt.UTC))
    result = cli(project, "publish", "future", "--now")  # no daemon alive: sent from here
    assert result.exit_code == 0, result.output
    assert "future → outbox: published" in result.stdout
