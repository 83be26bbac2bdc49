"""Alerts: once per event, summarised in a storm, retried, never in the way of publishing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from postscheduler.alerts import Alerter
from postscheduler.alerts import messages as alert_messages
from postscheduler.alerts.channels import Channel, ChannelError, ChatChannel
from postscheduler.config import load_settings
from postscheduler.delivery.engine import Engine
from postscheduler.errors import ConfigError, LedgerError
from postscheduler.ledger import Alert, AlertState, DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.posts.rules import validate
from postscheduler.publishers import OutcomeUnknownError, PermanentError
from postscheduler.redact import Redactor

from .conftest import Project
from .test_engine import Clock, Scripted

T0 = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)

CONFIG = """\
timezone: Europe/Madrid
posts_dir: posts
ledger: ledger.db
accounts:
  outbox: {platform: outbox, path: outbox}
  team: {platform: webhook, url: "http://127.0.0.1:9/alerts", secret: "${TEAM_SECRET}"}
defaults: {accounts: [outbox]}
publishing:
  late_grace: 30m
  retry: {attempts: 2, first_delay: 30s}
alerts:
  accounts: [team]
  max_per_hour: 5
  gather: 10s
"""


class Recording(Channel):
    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.sent: list[tuple[str, str]] = []
        self.failures = failures
        self.tries = 0

    async def send(self, subject: str, body: str) -> None:
        self.tries += 1
        if self.failures:
            self.failures -= 1
            raise ChannelError(f"{self.name}: connection refused")
        self.sent.append((subject, body))


@pytest.fixture
def project(make_project: Callable[[str], Project]) -> Project:
    return make_project(CONFIG)


class Rig:
    """An engine and an alerter on one ledger, with a recording channel and a clock."""

    def __init__(self, project: Project, *, channel: Recording | None = None, **pubs: Any):
        self.clock = Clock(T0)
        self.settings = project.settings({"TEAM_SECRET": "s" * 20})
        self.ledger = SqliteLedger(project.root / "ledger.db")
        self.channel = channel or Recording("team")
        self.alerter = Alerter(
            self.settings, self.ledger, clock=self.clock, channels={"team": self.channel}
        )
        self.engine = Engine(
            self.settings,
            self.ledger,
            clock=self.clock,
            publishers=pubs,
            redact=Redactor.for_settings(self.settings),
            notify=self.alerter.notify,
        )
        self.alerter.begin()  # alerts are about what happens from here on
        self.reload()

    def reload(self) -> None:
        catalog = validate(self.settings, now=self.clock())
        self.engine.load(catalog)
        self.alerter.see_catalog(catalog)

    def step(self, *, after: float = 11.0, flush: bool = False) -> int:
        """Let the alerter scan, then send once the gathering time has passed."""
        self.alerter.scan()
        self.clock.advance(seconds=after)
        return asyncio.run(self.alerter.dispatch(flush=flush))


def test_a_failed_delivery_is_one_alert_with_what_to_do_and_where(project: Project) -> None:
    project.write("p.yaml", "\nid: p\nat: 2027-01-14 10:00\ntext: Hello.\n")
    rig = Rig(project, outbox=Scripted([PermanentError("401: The access token is invalid")]))
    asyncio.run(rig.engine.run_due())
    assert rig.step() == 1
    [(subject, body)] = rig.channel.sent
    assert subject == "FAILED: p → outbox"
    assert "401: The access token is invalid" in body
    assert "File: posts/p.yaml:2" in body and "Account: outbox" in body
    assert "Due: 2027-01-14 10:00 CET" in body  # in the configuration's time zone
    assert "`postscheduler retry p`" in body
    # Seen again (a reload, a restart, another scan): nothing new.
    rig.reload()
    assert rig.step() == 0 and rig.alerter.scan() == 0
    [send] = rig.ledger.alert_sends()
    assert (send.state, send.channel) == (AlertState.SENT, "team")


def test_unconfirmed_names_the_account_and_the_resolve_commands(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 10:00\ntext: Hello.\n")
    rig = Rig(project, outbox=Scripted([OutcomeUnknownError("connection dropped")]))
    asyncio.run(rig.engine.run_due())
    rig.step()
    [(subject, body)] = rig.channel.sent
    assert subject == "UNCONFIRMED: p → outbox: check the account"
    assert "postscheduler resolve p --account outbox --sent" in body
    assert "postscheduler resolve p --account outbox --resend" in body


def test_a_storm_of_failures_is_one_summary(project: Project) -> None:
    for i in range(60):
        project.write(f"p{i}.yaml", f"id: p{i:02}\nat: 2027-01-14 10:00\ntext: Post {i}.\n")
    rig = Rig(project, outbox=Scripted([PermanentError("403: suspended")] * 60))
    asyncio.run(rig.engine.run_due())
    assert rig.alerter.scan() == 60
    assert asyncio.run(rig.alerter.dispatch()) == 0  # still gathering
    assert rig.step() == 1
    [(subject, body)] = rig.channel.sent
    assert subject == "60 alerts: 60 failed"
    assert "FAILED: p00 → outbox" in body and "… and 35 more" in body
    assert "postscheduler status" in body
    assert rig.step() == 0


def test_at_most_max_per_hour_messages_then_one_summary(project: Project) -> None:
    rig = Rig(project)
    for i in range(8):
        rig.alerter.notify(Alert("held", f"x{i}", f"alert {i}", "body"))
        assert rig.step(after=61) <= 1  # one at a time, each gathered alone
    assert len(rig.channel.sent) == 5  # max_per_hour
    rig.clock.advance(hours=1)
    assert rig.step() == 1
    assert rig.channel.sent[-1][0] == "3 alerts: 3 held"


def test_a_failing_channel_is_retried_with_backoff_and_others_go_on(project: Project) -> None:
    dead, good = Recording("team", failures=3), Recording("mail")
    rig = Rig(project, channel=dead)
    rig.alerter = Alerter(
        rig.settings, rig.ledger, clock=rig.clock, channels={"team": dead, "mail": good}
    )
    rig.ledger.raise_alert(Alert("held", "a", "subject", "body"), ["team", "mail"], rig.clock())
    rig.step()
    assert (dead.tries, len(good.sent)) == (1, 1)
    rig.step(after=10)  # not yet: 30 s after the first failure
    assert dead.tries == 1
    rig.step(after=25)
    rig.step(after=65)  # then 60 s
    rig.step(after=125)  # then 120 s: sent
    assert (dead.tries, dead.sent) == (4, [("subject", "body")])
    [send] = [s for s in rig.ledger.alert_sends() if s.channel == "team"]
    assert (send.state, send.attempts) == (AlertState.SENT, 4)


def test_a_channel_dead_for_a_day_is_given_up_loudly(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(project, channel=Recording("team", failures=10**6))
    rig.ledger.raise_alert(Alert("held", "a", "subject", "body"), ["team"], rig.clock())
    for _ in range(40):
        rig.step(after=3600)
    [send] = rig.ledger.alert_sends()
    assert send.state is AlertState.FAILED and "connection refused" in (send.error or "")
    assert "gave up sending 1 alerts to team after a day" in caplog.text


def test_a_dead_alert_channel_never_holds_a_delivery_back(project: Project) -> None:
    class Hanging(Channel):
        name = "team"

        async def send(self, subject: str, body: str) -> None:
            await asyncio.Event().wait()  # an SMTP server that accepts and never answers

    project.write("p.yaml", "id: p\nat: 2027-01-14 10:00\ntext: Hello.\n")
    project.write("q.yaml", "id: q\nat: 2027-01-14 10:00\ntext: Hi.\n")
    rig = Rig(project, outbox=Scripted([PermanentError("boom")]))
    rig.alerter._channels = {"team": Hanging()}

    async def both() -> None:
        stop = asyncio.Event()
        alerts = asyncio.create_task(rig.alerter.run(stop))
        await rig.engine.run_due()  # p fails (an alert that hangs), q goes out meanwhile
        stop.set()
        alerts.cancel()

    asyncio.run(both())
    assert rig.ledger.get(DeliveryKey("q", "outbox")).state is DeliveryState.PUBLISHED  # type: ignore[union-attr]


def test_alerts_start_from_now_not_from_the_history(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 10:00\ntext: Hello.\n")
    ledger = SqliteLedger(project.root / "ledger.db")
    settings = project.settings({"TEAM_SECRET": "s" * 20})
    engine = Engine(
        settings, ledger, clock=Clock(T0), publishers={"outbox": Scripted([PermanentError("x")])}
    )
    engine.load(validate(settings, now=T0))
    asyncio.run(engine.run_due())  # failed before alerts were configured
    alerter = Alerter(settings, ledger, clock=Clock(T0), channels={"team": Recording("team")})
    assert alerter.scan() == 0 and ledger.alert_sends() == []


def test_a_held_file_is_one_alert_however_often_it_is_reloaded(project: Project) -> None:
    project.write(
        "bad.yaml", "id: bad\nat: 2027-01-14 10:00\ntext: Hello.\nimage: {file: nope.jpg}\n"
    )
    rig = Rig(project)
    for _ in range(20):  # a reload storm: an editor saving every keystroke
        rig.reload()
    rig.step()
    [(subject, body)] = rig.channel.sent
    assert subject == "HELD: bad: its file has errors" and "File: posts/bad.yaml" in body
    assert "line 4: missing required key 'alt'" in body and "key 'credit'" in body


def test_a_file_whose_id_is_a_list_is_held_with_an_alert(project: Project) -> None:
    project.write("bad.yaml", "id: [outbox, outbox]\nat: 2027-01-14 10:00\ntext: Hello.\n")
    rig = Rig(project)
    rig.step()
    [(subject, body)] = rig.channel.sent
    assert subject == "HELD: posts/bad.yaml: its file has errors", subject
    assert "File: posts/bad.yaml" in body and "id: input should be a valid string" in body


def test_token_expiry_is_told_once_not_every_day() -> None:
    first = alert_messages.credential_alert(
        "fb", "fb: the access token expires on 2027-02-01 (in 13 days): re-authorize"
    )
    later = alert_messages.credential_alert(
        "fb", "fb: the access token expires on 2027-02-01 (in 12 days): re-authorize"
    )
    other = alert_messages.credential_alert(
        "fb", "fb: the access token expires on 2027-04-01 (in 13 days): re-authorize"
    )
    assert first.dedupe == later.dedupe != other.dedupe


def test_skipped_as_late_says_how_to_send_it_anyway(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 10:00\ntext: Hello.\nthread: [Two.]\n")
    rig = Rig(project, outbox=Scripted())
    rig.clock.advance(hours=2)
    asyncio.run(rig.engine.run_due())
    rig.step()
    [(subject, body)] = rig.channel.sent  # the thread's two parts: one alert
    assert subject == "SKIPPED (late): p → outbox"
    assert "postscheduler publish p --now --account outbox" in body


def test_an_alert_the_ledger_cannot_take_is_sent_straight_away(project: Project) -> None:
    rig = Rig(project)

    def refuse(*args: Any) -> bool:
        raise LedgerError("disk full")

    rig.ledger.raise_alert = refuse  # type: ignore[method-assign]
    alert = Alert("ledger", "l", "LEDGER UNUSABLE", "disk full")
    rig.alerter.notify(alert)
    rig.alerter.notify(alert)  # once per process
    assert rig.step() == 1 and rig.channel.sent == [("LEDGER UNUSABLE", "disk full")]


def test_secrets_never_reach_an_alert(project: Project) -> None:
    canary = "CANARY-token-5f1e2d3c4b5a"
    project.write("p.yaml", "id: p\nat: 2027-01-14 10:00\ntext: Hello.\n")
    rig = Rig(project, outbox=Scripted([PermanentError(f"401 bad token {canary}")]))
    rig.settings = load_settings(project.config_path, environ={"TEAM_SECRET": canary})
    rig.alerter.redact = Redactor.for_settings(rig.settings)
    asyncio.run(rig.engine.run_due())
    rig.step()
    [(_, body)] = rig.channel.sent
    assert canary not in body and "***" in body
    assert all(canary not in s.alert.body for s in rig.ledger.alert_sends())


def test_an_alert_account_is_never_a_target_unless_a_post_names_it(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 10:00\ntext: Hello.\n")
    rig = Rig(project)
    assert {r.key.account for r in rig.ledger.deliveries()} == {"outbox"}
    bad = CONFIG.replace("defaults: {accounts: [outbox]}", "defaults: {accounts: [outbox, team]}")
    project.config_path.write_text(bad)
    with pytest.raises(ConfigError) as info:
        load_settings(project.config_path)
    text = str(info.value) + "".join(f.message for f in info.value.findings)
    assert "both an alert account and in defaults.accounts" in text


def test_only_chat_and_webhook_accounts_take_alerts(project: Project) -> None:
    project.config_path.write_text(CONFIG.replace("accounts: [team]", "accounts: [outbox]"))
    with pytest.raises(ConfigError) as info:
        load_settings(project.config_path)
    assert "a outbox account" in "".join(f.message for f in info.value.findings)


def test_chat_alerts_fit_the_smallest_chat_limit() -> None:
    channel = ChatChannel("team", Scripted(), Clock(T0))
    text = channel.text("subject", "x" * 5000)
    assert len(text) <= 1900 and text.endswith("`postscheduler alerts list`)")


def test_the_readme_alerts_example_is_a_valid_configuration(project: Project) -> None:
    from .conftest import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("```yaml\nalerts:\n", 1)[1].split("```", 1)[0]
    project.config_path.write_text(
        'accounts:\n  team-chat: {platform: discord, webhook_url: "${DISCORD}"}\nalerts:\n' + block
    )
    alerts = load_settings(project.config_path).config.alerts
    assert alerts.accounts == ["team-chat"] and alerts.smtp is not None
    assert alerts.smtp.sender == "alerts@example.org" and alerts.digest == "08:00"


def test_a_failed_thread_part_links_what_was_published(project: Project) -> None:
    project.write("t.yaml", "id: t\nat: 2027-01-14 10:00\ntext: One.\nthread: [Two.]\n")
    rig = Rig(project, outbox=Scripted([None, PermanentError("422: too long")]))
    asyncio.run(rig.engine.run_due())
    rig.step()
    [(subject, body)] = rig.channel.sent
    assert subject == "FAILED: t → outbox part 2"
    assert "Published so far: https://example.test/1" in body


def test_the_daily_digest_lists_tomorrow_and_what_needs_a_person(
    make_project: Callable[[str], Project],
) -> None:
    project = make_project(CONFIG.replace("gather: 10s", 'gather: 10s\n  digest: "08:00"'))
    project.write("p.yaml", "id: p\nat: 2027-01-14 20:00\ntext: Tonight.\n")
    project.write("q.yaml", "id: q\nat: 2027-01-16 20:00\ntext: Later.\n")
    project.write("bad.yaml", "id: bad\nat: 2027-01-14 21:00\ntext: [not, text]\n")
    rig = Rig(project)
    rig.clock.now = dt.datetime(2027, 1, 14, 7, 5, tzinfo=dt.UTC)  # 08:05 in Madrid
    digest = rig.alerter.digest(rig.clock())
    assert digest is not None and digest.dedupe == "digest:2027-01-14"
    assert "Thu 20:00  p → outbox" in digest.body and "q →" not in digest.body
    assert "HELD: posts/bad.yaml:3:7: text: input should be a valid string" in digest.body
    assert digest.subject == "Digest for Thursday 14 January: 1 delivery, 1 needing a person"
    rig.clock.now = dt.datetime(2027, 1, 14, 9, 30, tzinfo=dt.UTC)  # past its hour: none
    assert rig.alerter.digest(rig.clock()) is None


def test_a_token_about_to_expire_is_an_alert_at_start_up(project: Project) -> None:
    class Expiring(Scripted):
        def credential_warnings(self, now: dt.datetime) -> list[str]:
            return ["outbox: the access token expires on 2027-01-20 (in 6 days): re-authorize"]

    rig = Rig(project, outbox=Expiring())
    rig.engine.prepare()
    rig.engine.prepare()  # a configuration reload prepares again: still one alert
    rig.step()
    [(subject, body)] = rig.channel.sent
    assert subject == "CREDENTIALS: outbox" and "expires on 2027-01-20" in body
    assert "postscheduler accounts check outbox" in body


def test_daemons_sharing_a_ledger_send_each_alert_once(
    make_project: Callable[[str], Project], postgres: Any
) -> None:
    """Every daemon on a PostgreSQL ledger runs an alerter over the same alerts: while one
    is sending a channel's (an SMTP server taking its time), the others leave it alone."""
    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    project = make_project(CONFIG.replace("ledger: ledger.db", f'ledger: "{url}"'))
    settings = project.settings({"TEAM_SECRET": "s" * 20})
    clock = Clock(T0)
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(Recording):
        async def send(self, subject: str, body: str) -> None:
            entered.set()
            await asyncio.wait_for(release.wait(), 10)
            await super().send(subject, body)

    ledgers = [PostgresLedger(url), PostgresLedger(url)]
    channels = [Slow("team"), Recording("team")]
    alerters = [
        Alerter(settings, ledger, clock=clock, channels={"team": channel})
        for ledger, channel in zip(ledgers, channels, strict=True)
    ]
    try:
        alerters[0]._raise(Alert("trouble", "x:1", "LEDGER UNREACHABLE", "Details.", None, None))

        async def both() -> list[int]:
            first = asyncio.ensure_future(alerters[0].dispatch(flush=True))
            await asyncio.wait_for(entered.wait(), 30)  # the first is inside its send
            second = await alerters[1].dispatch(flush=True)  # meanwhile: not its turn
            release.set()
            return [await first, second]

        assert asyncio.run(both()) == [1, 0]
        assert [len(c.sent) for c in channels] == [1, 0]
        assert asyncio.run(alerters[1].dispatch(flush=True)) == 0  # sent: nothing left
        [send] = ledgers[1].alert_sends()
        assert send.state is AlertState.SENT
    finally:
        for ledger in ledgers:
            ledger.close()
