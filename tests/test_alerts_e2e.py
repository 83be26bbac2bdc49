"""Alerts end to end: a real daemon, a real SMTP server, a loopback Telegram, a failing account."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Project
from .fakes.platforms import FakeTelegram, FakeWebhook
from .fakes.smtp import Mailbox, smtp_server
from .test_daemon import Daemon, at, wait_for
from .test_daemon import cli as run_cli

SMTP_PASSWORD = "CANARY-smtp-password-77f3"


def config(box: Mailbox, site: str, telegram: str, *, extra: str = "") -> str:
    return f"""\
timezone: UTC
posts_dir: posts
ledger: state/ledger.db
accounts:
  outbox: {{platform: outbox, path: outbox}}
  site: {{platform: webhook, url: "{site}", secret: "${{SITE_SECRET}}"}}
  team: {{platform: telegram, bot_token: "${{TEAM_TOKEN}}", chat_id: "@campaign-team",
          api_base: "{telegram}"}}
defaults: {{accounts: [outbox]}}
alerts:
  accounts: [team]
  gather: 1s
  smtp:
    host: 127.0.0.1
    port: {box.port}
    starttls: false
    username: alerts
    password: ${{SMTP_PASSWORD}}
    from: postscheduler@campaign.test
    to: [organisers@campaign.test]
{extra}"""


ENV = {
    "SITE_SECRET": FakeWebhook.SECRET,
    "TEAM_TOKEN": FakeTelegram.TOKEN,
    "SMTP_PASSWORD": SMTP_PASSWORD,
}


@pytest.fixture
def box() -> Iterator[Mailbox]:
    with smtp_server(password=SMTP_PASSWORD) as mailbox:
        yield mailbox


@pytest.fixture
def site() -> Iterator[FakeWebhook]:
    with FakeWebhook() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake  # type: ignore[misc]


def messages(telegram: FakeTelegram) -> list[str]:
    with telegram.lock:
        return [r["body"]["text"] for r in telegram.received if r["path"].endswith("sendMessage")]


def cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(project, *args, env=ENV)


def test_an_unconfirmed_delivery_is_one_email_and_one_chat_alert_with_the_resolve_command(
    make_project: Callable[[str], Project],
    box: Mailbox,
    site: FakeWebhook,
    telegram: FakeTelegram,
) -> None:
    import os

    project = make_project(config(box, site.url, telegram.base))
    site.faults.extend(["lose", "lose"])  # received, then the answer is lost: unconfirmed
    project.write(
        "p.yaml", f"id: p\nat: {at(-1)}\ntext: The march starts at noon.\naccounts: [site]\n"
    )
    daemon = Daemon(
        [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
        env={**os.environ, **ENV},
    )
    try:
        assert wait_for(lambda: len(box.messages) == 1 and len(messages(telegram)) == 1), (
            daemon.lines
        )
        mail, chat = box.messages[0], messages(telegram)[0]
        assert mail["Subject"] == "[postscheduler] UNCONFIRMED: p → site: check the account"
        assert mail["To"] == "organisers@campaign.test"
        for text in (mail.get_content(), chat):
            assert "postscheduler resolve p --account site --sent" in text
            assert "postscheduler resolve p --account site --resend" in text
            assert "File: posts/p.yaml:1" in text
        assert box.logins == [("alerts", SMTP_PASSWORD)]
        # A reload storm, then a second failure: when its alert arrives, the first one has
        # still been sent once.
        for i in range(5):
            project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Edit {i}.\naccounts: [site]\n")
        project.write("q.yaml", f"id: q\nat: {at(1)}\ntext: Second.\naccounts: [site]\n")
        assert wait_for(lambda: len(box.messages) >= 2 and len(messages(telegram)) >= 2), (
            daemon.lines
        )
        subjects = [m["Subject"] for m in box.messages]
        assert subjects == [
            "[postscheduler] UNCONFIRMED: p → site: check the account",
            "[postscheduler] UNCONFIRMED: q → site: check the account",
        ]
        assert len(messages(telegram)) == 2
    finally:
        daemon.terminate()
        log, _ = daemon.communicate(timeout=30)
    assert "daemon stopped" in log
    ledger_bytes = (project.root / "state" / "ledger.db").read_bytes()
    for secret in (SMTP_PASSWORD, FakeTelegram.TOKEN, FakeWebhook.SECRET):
        assert secret not in log
        assert secret.encode() not in ledger_bytes
        assert all(secret.encode() not in raw for raw in box.raw)


def test_run_once_sends_the_alerts_of_its_run(
    make_project: Callable[[str], Project],
    box: Mailbox,
    site: FakeWebhook,
    telegram: FakeTelegram,
) -> None:
    project = make_project(config(box, site.url, telegram.base))
    site.faults.append((403, {"Content-Type": "application/json"}, b'{"error": "suspended"}'))
    project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Hello.\naccounts: [site]\n")
    done = cli(project, "run", "--once")
    assert done.returncode == 1 and "failed: p → site" in done.stdout, done.stderr
    [mail] = box.messages
    assert mail["Subject"] == "[postscheduler] FAILED: p → site"
    assert "suspended" in mail.get_content() and "postscheduler retry p" in mail.get_content()
    assert len(messages(telegram)) == 1
    listed = cli(project, "alerts", "list")
    assert "smtp: sent: FAILED: p → site" in listed.stdout
    assert "team: sent: FAILED: p → site" in listed.stdout
    # The next run has nothing new to say.
    cli(project, "run", "--once")
    assert len(box.messages) == 1 and len(messages(telegram)) == 1


def test_alerts_test_reaches_every_channel_and_says_which_failed(
    make_project: Callable[[str], Project],
    box: Mailbox,
    site: FakeWebhook,
    telegram: FakeTelegram,
) -> None:
    project = make_project(config(box, site.url, telegram.base))
    done = cli(project, "alerts", "test")
    assert done.returncode == 0 and done.stdout.splitlines() == ["smtp: sent", "team: sent"]
    assert box.messages[0]["Subject"] == "[postscheduler] test alert"
    assert "test alert" in messages(telegram)[0]
    telegram.faults.append(
        (
            401,
            {"Content-Type": "application/json"},
            b'{"ok": false, "error_code": 401, "description": "Unauthorized"}',
        )
    )
    broken = cli(project, "alerts", "test")
    assert broken.returncode == 1 and "team: FAILED" in broken.stdout
    assert "Unauthorized" in broken.stdout and FakeTelegram.TOKEN not in broken.stdout


def test_alerts_test_without_alerts_says_how_to_set_them_up(project: Project) -> None:
    done = cli(project, "alerts", "test")
    assert done.returncode != 0 and "no alerts: section" in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_skips_what_was_held_too_long_or_sends_it_with_send_held(
    make_project: Callable[[str], Project], box: Mailbox, site: FakeWebhook, telegram: FakeTelegram
) -> None:
    project = make_project(config(box, site.url, telegram.base))
    assert cli(project, "pause", "--reason", "mourning").returncode == 0
    project.write("old.yaml", f"id: old\nat: {at(-7200)}\ntext: Two hours ago.\n")
    project.write("new.yaml", f"id: new\nat: {at(-60)}\ntext: A minute ago.\n")
    held = cli(project, "run", "--once")
    assert "PAUSED: all accounts: mourning; holding 2 due deliveries" in held.stdout, held.stdout
    assert not (project.root / "outbox").exists()
    resumed = cli(project, "resume")
    assert "skipped as late (due" in resumed.stdout and "old → outbox" in resumed.stdout
    assert "publish POST --now" in resumed.stderr
    done = cli(project, "run", "--once")
    assert done.stdout.splitlines() == ["published: new → outbox"]
    history = cli(project, "history", "--post", "old")
    assert "skipped" in history.stdout and "late, held by a pause" in history.stdout
    assert any(
        m["Subject"] == "[postscheduler] SKIPPED (late, held by a pause): old → outbox"
        for m in box.messages
    )
    # With --send-held, what the pause held goes out, in the order it was due.
    assert cli(project, "pause").returncode == 0
    project.write("a.yaml", f"id: a\nat: {at(-7000)}\ntext: First.\n")
    project.write("b.yaml", f"id: b\nat: {at(-6000)}\ntext: Second.\n")
    cli(project, "run", "--once")
    resumed = cli(project, "resume", "--send-held")
    assert resumed.stdout.splitlines()[1:] == [
        "sending now, though held past late_grace: a → outbox",
        "sending now, though held past late_grace: b → outbox",
    ], resumed.stdout
    done = cli(project, "run", "--once")
    assert done.stdout.splitlines() == ["published: a → outbox", "published: b → outbox"]
    outbox = Path(project.root / "outbox")
    assert (outbox / "a.outbox.1.json").stat().st_mtime_ns <= (
        outbox / "b.outbox.1.json"
    ).stat().st_mtime_ns


def test_a_restart_after_a_crash_says_what_it_found(
    make_project: Callable[[str], Project], box: Mailbox, site: FakeWebhook, telegram: FakeTelegram
) -> None:
    import datetime as dt

    from postscheduler.ledger import DeliveryKey
    from postscheduler.ledger.sqlite import SqliteLedger

    project = make_project(config(box, site.url, telegram.base))
    project.write("p.yaml", f"id: p\nat: {at(-5)}\ntext: In flight.\n")
    cli(project, "pause")  # plan it, send nothing
    cli(project, "run", "--once")
    cli(project, "resume")
    ledger = SqliteLedger(project.root / "state" / "ledger.db")
    ledger.claim(DeliveryKey("p", "outbox"), "postscheduler-x", dt.datetime.now(dt.UTC))
    ledger.close()  # as a kill -9 leaves it: sending, nobody knows
    done = cli(project, "run", "--once")
    assert done.returncode == 0, done.stderr
    subjects = [m["Subject"] for m in box.messages]
    assert "[postscheduler] RESTARTED after a crash: 1 delivery was in flight" in subjects
    [mail] = [m for m in box.messages if "RESTARTED" in m["Subject"]]
    assert "p → outbox: it was not sent: sending it now" in mail.get_content()


def test_held_files_missing_credentials_and_the_burst_guard_reach_the_mailbox(
    make_project: Callable[[str], Project], box: Mailbox, site: FakeWebhook, telegram: FakeTelegram
) -> None:
    extra = "publishing: {max_per_hour: 1}\n"
    text = config(box, site.url, telegram.base, extra=extra)
    text = text.replace(
        "  outbox: {platform: outbox, path: outbox}\n",
        (
            "  outbox: {platform: outbox, path: outbox}\n"
            '  later: {platform: discord, webhook_url: "${NOT_SET_ANYWHERE}"}\n'
        ),
    )
    project = make_project(text)
    project.write("bad.yaml", f"id: bad\nat: {at(60)}\ntext: [not, text]\n")
    project.write("one.yaml", f"id: one\nat: {at(-2)}\ntext: First.\n")
    project.write("two.yaml", f"id: two\nat: {at(-1)}\ntext: Second.\n")
    cli(project, "run", "--once")
    subjects = sorted(m["Subject"].removeprefix("[postscheduler] ") for m in box.messages)
    assert subjects == [
        "BURST GUARD: outbox is holding posts back",
        "CREDENTIALS: later",
        "HELD: bad: its file has errors",
    ], subjects
    by_subject = {m["Subject"]: m.get_content() for m in box.messages}
    assert (
        "line 3: text: input should be a valid string"
        in by_subject["[postscheduler] HELD: bad: its file has errors"]
    )
    assert "NOT_SET_ANYWHERE" in by_subject["[postscheduler] CREDENTIALS: later"]
    assert (
        "postscheduler pause --account outbox"
        in by_subject["[postscheduler] BURST GUARD: outbox is holding posts back"]
    )
    assert len(messages(telegram)) == 3  # three alerts (a summary is for more than three)
    cli(project, "run", "--once")  # seen again: nothing new
    assert len(box.messages) == 3


def test_a_daemon_stops_promptly_while_its_mail_server_hangs(
    make_project: Callable[[str], Project], site: FakeWebhook, telegram: FakeTelegram
) -> None:
    import os
    import socket
    import threading

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(10)
    held: list[object] = []
    threading.Thread(target=lambda: held.append(hole.accept()), daemon=True).start()
    dead = Mailbox()
    dead.port = hole.getsockname()[1]
    project = make_project(
        config(dead, site.url, telegram.base).replace("  accounts: [team]\n", "")
    )
    site.faults.append((403, {"Content-Type": "application/json"}, b'{"error": "no"}'))
    project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Hi.\naccounts: [site]\n")
    daemon = Daemon(
        [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
        env={**os.environ, **ENV},
    )
    try:
        assert wait_for(lambda: bool(held)), daemon.lines  # the alert is stuck in SMTP
        daemon.terminate()
        log, _ = daemon.communicate(timeout=60)  # well before the 60 s SMTP send limit ends
    finally:
        if daemon.poll() is None:
            daemon.kill()
        for connection, _ in held:  # type: ignore[misc]
            connection.close()
        hole.close()
    assert daemon.returncode == 0 and "daemon stopped" in log
