"""The alerter: turns what needs a person into messages that reach one, once.

Alerts are deliveries of their own, kept in the ledger (``alerts``, ``alert_sends``):

- **From the history.** Failed, unconfirmed, and late or expired deliveries are read from the
  ledger's history after a cursor, and the alerts and the cursor's move are committed
  together: a crash between the failure and its alert loses neither, and nothing is told
  twice. Every process on the ledger (the daemon, ``run --once``) does the same.
- **From the daemon.** Credentials that stop working or expire soon, a file that holds posts
  back, a restart after a crash: ``notify()`` takes them without waiting (it never blocks
  the delivery that raised them); the alerter's own task records them.
- **Once per event.** Each alert has a ``dedupe`` naming its event; raising it again is a
  no-op, so a reload storm or a restart multiplies nothing.
- **Few messages.** Alerts raised together (within ``alerts.gather``) go as one summary
  when there are more than ``SUMMARY_OVER``; a channel gets at most ``alerts.max_per_hour``
  messages, and what is over waits for the next summary.
- **Never in the way.** The alerter runs beside the scheduler as a task of its own; the
  ledger is read on a worker thread, SMTP on another, chat messages have a timeout. A dead
  channel is retried with backoff for a day, then given up, in the log.
- **The ledger unusable.** An alert that cannot be recorded (the disk full, the ledger
  replaced) is sent straight away, once per process, so the one alert that matters most is
  not lost with the ledger.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..errors import Finding, LedgerError, PublishError
from ..ledger import (
    CLAIMABLE_STATES,
    Alert,
    AlertSend,
    AlertState,
    DeliveryState,
    Ledger,
)
from ..posts.loader import Catalog
from . import messages
from .channels import Channel, ChannelError, ChatChannel, SmtpChannel

log = logging.getLogger("postscheduler")

ALERT_POLL = 1.0  # seconds between looks at the history and the queue
SUMMARY_OVER = 3  # more alerts than this ready at once go as one summary
SEND_TIMEOUT = 60.0  # seconds one message may take, SMTP conversation included
RETRY_FIRST = dt.timedelta(seconds=30)  # a channel that failed, doubling up to RETRY_MAX
RETRY_MAX = dt.timedelta(hours=1)
GIVE_UP = dt.timedelta(days=1)
STORM_WAIT = 5  # a steady stream is summarised at least every gather × this
DIGEST_WINDOW = dt.timedelta(hours=1)  # a daemon started after the digest's hour + this skips it


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Alerter:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
        redact: Callable[[str], str] = str,
        http: Any = None,
        channels: dict[str, Channel] | None = None,
        on_sent: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_sent = on_sent or (lambda channel, sent: None)  # (channel, sent?): metrics
        self.ledger = ledger
        self.clock = clock
        self.redact = redact
        self.catalog: Catalog | None = None
        self._http = http
        self._owns_http = False
        self._channels: dict[str, Channel] | None = channels
        self._inbox: collections.deque[Alert] = collections.deque()
        self._unrecorded: list[Alert] = []  # the ledger refused them: sent straight away
        self._unrecorded_seen: set[str] = set()
        self._sites: tuple[Catalog | None, dict[str, str]] | None = None

    async def reconfigure(self, settings: Settings, redact: Callable[[str], str]) -> None:
        """A new configuration: its channels from now on (the old ones are closed)."""
        old, self._channels = self._channels, None
        self.settings, self.redact = settings, redact
        for channel in (old or {}).values():
            await channel.aclose()

    @property
    def enabled(self) -> bool:
        return self.settings.config.alerts.configured

    def channel_names(self) -> list[str]:
        cfg = self.settings.config.alerts
        return (["smtp"] if cfg.smtp else []) + list(cfg.accounts)

    # --- raising ----------------------------------------------------------------------------

    def notify(self, alert: Alert) -> None:
        """Raise ``alert`` soon; returns at once (the alerter's task records it)."""
        if self.enabled:
            self._inbox.append(alert)

    def _masked(self, alert: Alert) -> Alert:
        return Alert(
            alert.kind,
            alert.dedupe,
            self.redact(alert.subject),
            self.redact(alert.body),
            alert.post_id,
            alert.account,
        )

    def _raise(self, alert: Alert) -> bool:
        alert = self._masked(alert)
        try:
            return self.ledger.raise_alert(alert, self.channel_names(), self.clock())
        except LedgerError as exc:
            if alert.dedupe in self._unrecorded_seen:
                return False
            log.error("alert %s not recorded (%s): sending it straight away", alert.subject, exc)
            self._unrecorded_seen.add(alert.dedupe)
            self._unrecorded.append(alert)
            return True

    def see_catalog(self, catalog: Catalog) -> None:
        """Keep the posts (for file and line in alerts) and raise one alert per file error
        that holds posts back."""
        self.catalog = catalog
        held: dict[tuple[str, str | None], list[str]] = {}
        for finding in catalog.findings:
            if not finding.is_error:
                continue
            file = self._relative(finding).file
            where = f"line {finding.line}: " if finding.line else ""
            hint = f" ({finding.hint})" if finding.hint else ""
            errors = held.setdefault((str(file or "scheduler.yaml"), finding.post_id), [])
            errors.append(f"{where}{finding.message}{hint}")
        for (file_name, post_id), errors in held.items():
            self.notify(messages.held_alert(post_id, file_name, errors))

    def _relative(self, finding: Finding) -> Finding:
        """The finding with its file relative to the configuration's folder, as people
        see it in their checkout."""
        file = finding.file
        if file is not None and file.is_relative_to(self.settings.base_dir):
            return dataclasses.replace(finding, file=file.relative_to(self.settings.base_dir))
        return finding

    def _context(self) -> messages.Context:
        catalog = self.catalog
        if self._sites is None or self._sites[0] is not catalog:
            sites: dict[str, str] = {}
            for sp in catalog.posts if catalog is not None else []:
                file = sp.file
                with contextlib.suppress(ValueError):
                    file = file.relative_to(self.settings.base_dir)
                line = sp.doc.mark_of(sp.base).line
                sites[sp.id] = f"{file}:{line}" if line else str(file)
            self._sites = (catalog, sites)  # worked out once per reload, not per scan
        sites = self._sites[1]

        def published(post_id: str, account: str) -> list[str]:
            return [
                r.remote_url
                for r in self.ledger.deliveries(post_id=post_id, account=account)
                if r.state is DeliveryState.PUBLISHED and r.remote_url
            ]

        cfg = self.settings.config
        return messages.Context(
            zone=cfg.zone,
            late_grace=cfg.publishing.late_grace,
            where=sites.get,
            row=self.ledger.get,
            published=published,
        )

    def begin(self) -> None:
        """Where the alerts start, the first time they are configured: from now on, not
        about months of history. Call before anything is sent."""
        if self.enabled and self.ledger.alert_cursor() is None:
            self.ledger.set_alert_cursor(self.ledger.last_event_id())

    def scan(self) -> int:
        """Record what is waiting in the inbox, and an alert for every delivery event a
        person must hear of since the last scan. Blocking: run it on a worker thread."""
        raised = 0
        while self._inbox:
            raised += self._raise(self._inbox.popleft())
        try:
            return raised + self._scan_history()
        except LedgerError as exc:  # what the inbox held is kept, or goes straight away
            log.error("alerts: cannot read the ledger's history: %s", exc)
            return raised

    def _scan_history(self) -> int:
        cursor = self.ledger.alert_cursor()
        if cursor is None:
            self.begin()
            return 0
        raised = 0
        ctx = self._context()
        while events := self.ledger.events_after(cursor):
            alerts = messages.delivery_alerts(events, ctx)
            with self.ledger.transaction():  # the alerts and the cursor's move, together
                for alert in alerts:
                    raised += self.ledger.raise_alert(
                        self._masked(alert), self.channel_names(), self.clock()
                    )
                cursor = events[-1][0]
                self.ledger.set_alert_cursor(cursor)
        return raised

    def digest(self, now: dt.datetime) -> Alert | None:
        """The daily digest, when it is due (within an hour after its local time)."""
        at = self.settings.config.alerts.digest
        if at is None:
            return None
        zone = self.settings.config.zone
        local = now.astimezone(zone)
        hour, minute = (int(x) for x in at.split(":"))
        start = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if not start <= local < start + DIGEST_WINDOW:
            return None
        day = now + dt.timedelta(days=1)
        upcoming = [
            r for r in self.ledger.deliveries(states=CLAIMABLE_STATES) if r.next_attempt_at <= day
        ]
        problems = self.ledger.deliveries(states=[DeliveryState.FAILED, DeliveryState.UNCONFIRMED])
        held = [
            self._relative(f) for f in (self.catalog.findings if self.catalog else []) if f.is_error
        ]
        pauses = self.ledger.pauses(now)
        lines = [f"The next 24 hours: {_count(len(upcoming), 'delivery', 'deliveries')}."]
        lines += [
            f"  {r.next_attempt_at.astimezone(zone).strftime('%a %H:%M')}  {r.key}"
            for r in upcoming[: messages.SUMMARY_LINES]
        ]
        if len(upcoming) > messages.SUMMARY_LINES:
            lines.append(f"  … and {len(upcoming) - messages.SUMMARY_LINES} more")
        lines.append("")
        for p in pauses:
            lines.append(
                f"PAUSED: {p.account or 'all accounts'}" + (f": {p.reason}" if p.reason else "")
            )
        for r in problems:
            lines.append(f"{r.state.value.upper()}: {r.key}: {r.reason or ''}")
        for f in held:
            lines.append(f"HELD: {f.location()}: {f.message}")
        if not (problems or held or pauses):
            lines.append("Nothing needs a person.")
        else:
            lines.append("`postscheduler status` says what to do for each.")
        return Alert(
            "digest",
            f"digest:{local.date().isoformat()}",
            f"Digest for {local.strftime('%A %d %B')}: "
            f"{_count(len(upcoming), 'delivery', 'deliveries')}, "
            f"{len(problems) + len(held)} needing a person",
            "\n".join(lines),
        )

    # --- sending ----------------------------------------------------------------------------

    def channels(self) -> dict[str, Channel]:
        if self._channels is None:
            from ..publishers import make_publisher

            cfg = self.settings.config.alerts
            found: dict[str, Channel] = {}
            if cfg.smtp is not None:
                campaign = self.settings.base_dir.name
                found["smtp"] = SmtpChannel(cfg.smtp, self.settings.env, campaign, self.redact)
            for account in cfg.accounts:
                try:
                    publisher = make_publisher(account, self.settings, http=self._http_client())
                except PublishError as exc:
                    log.error("alert account %s cannot send: %s", account, exc.message)
                    continue
                found[account] = ChatChannel(account, publisher, self.clock)
            self._channels = found
        return self._channels

    def _http_client(self) -> Any:
        if self._http is None:
            from ..publishers.http import new_client

            self._http = new_client(read=15.0, connect=5.0)  # an alert must not hang the loop
            self._owns_http = True
        return self._http

    async def dispatch(self, *, flush: bool = False) -> int:
        """Send what is ready on every channel, the channels side by side; ``flush``: do
        not wait for more alerts to gather (the run is ending). Returns messages sent."""
        channels = self.channels()
        sent = 0
        if self._unrecorded:
            unrecorded, self._unrecorded = self._unrecorded, []
            for alert in unrecorded:
                for name, channel in channels.items():
                    sent += await self._send_unrecorded(name, channel, alert)
        counts = await asyncio.gather(
            *(self._dispatch_channel(name, ch, flush) for name, ch in channels.items())
        )
        return sent + sum(counts)

    async def _send_unrecorded(self, name: str, channel: Channel, alert: Alert) -> int:
        try:
            await asyncio.wait_for(channel.send(alert.subject, alert.body), SEND_TIMEOUT)
        except (ChannelError, TimeoutError) as exc:
            log.error("alert %r not sent to %s: %s", alert.subject, name, _why(exc))
            return 0
        return 1

    async def _dispatch_channel(self, name: str, channel: Channel, flush: bool) -> int:
        if not await asyncio.to_thread(self.ledger.take_alert_turn, name):
            return 0  # another daemon is sending this channel's alerts
        try:
            return await self._dispatch_turn(name, channel, flush)
        finally:
            await asyncio.to_thread(self.ledger.end_alert_turn, name)

    async def _dispatch_turn(self, name: str, channel: Channel, flush: bool) -> int:
        now = self.clock()
        pending = await asyncio.to_thread(self.ledger.alerts_pending, name)
        due = [s for s in pending if s.next_at <= now]
        if not due:
            return 0
        gather = self.settings.config.alerts.gather
        newest = max(s.created_at for s in due)
        oldest = min(s.created_at for s in due)
        if not flush and now - newest < gather and now - oldest < gather * STORM_WAIT:
            return 0  # more may be coming: one summary instead of many messages
        hour_ago = now - dt.timedelta(hours=1)
        used = await asyncio.to_thread(self.ledger.alert_messages_since, name, hour_ago)
        budget = self.settings.config.alerts.max_per_hour - used
        if budget <= 0:
            return 0  # the next hour's first message is the summary of all of them
        waited = now - oldest >= gather * STORM_WAIT  # held back by the budget, or retried
        if len(due) == 1 or (len(due) <= min(SUMMARY_OVER, budget) and not waited):
            sent = 0
            for send in due:
                sent += await self._send(name, channel, [send], send.alert.subject, send.alert.body)
            return sent
        subject, body = messages.summary(due)
        return await self._send(name, channel, due, subject, body)

    async def _send(
        self, name: str, channel: Channel, sends: list[AlertSend], subject: str, body: str
    ) -> int:
        ids = [s.id for s in sends]
        try:
            await asyncio.wait_for(channel.send(subject, body), SEND_TIMEOUT)
        except (ChannelError, TimeoutError, Exception) as exc:
            if not isinstance(exc, ChannelError | TimeoutError):
                log.exception("error while sending an alert to %s", name)
            now = self.clock()
            why = self.redact(_why(exc))
            attempts = max(s.attempts for s in sends) + 1
            if now - min(s.created_at for s in sends) >= GIVE_UP:
                await asyncio.to_thread(
                    self.ledger.record_alerts, name, ids, AlertState.FAILED, now, error=why
                )
                log.error("gave up sending %d alerts to %s after a day: %s", len(ids), name, why)
                return 0
            self.on_sent(name, False)
            wait = min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_MAX)
            await asyncio.to_thread(
                self.ledger.record_alerts,
                name,
                ids,
                AlertState.PENDING,
                now,
                next_at=now + wait,
                error=why,
            )
            log.warning(
                "alert %r not sent to %s (%s); trying again in %d s",
                subject,
                name,
                why,
                wait.total_seconds(),
            )
            return 0
        await asyncio.to_thread(self.ledger.record_alerts, name, ids, AlertState.SENT, self.clock())
        self.on_sent(name, True)
        log.info("alert sent to %s: %s", name, subject)
        return 1

    # --- running ----------------------------------------------------------------------------

    async def step(self, *, flush: bool = False) -> int:
        await asyncio.to_thread(self.scan)
        digest = self.digest(self.clock())
        if digest is not None:
            await asyncio.to_thread(self._raise, digest)
        return await self.dispatch(flush=flush)

    async def run(self, stop: asyncio.Event) -> None:
        """Beside the scheduler until ``stop``: a failure here is logged and never reaches
        the deliveries."""
        if not self.enabled:
            return
        while not stop.is_set():
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerts: a round failed; the alerter goes on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ALERT_POLL)

    async def flush(self, timeout: float = 30.0) -> None:
        """Send what is waiting now, for at most ``timeout`` seconds (a run is ending)."""
        if not self.enabled:
            return
        try:
            await asyncio.wait_for(self.step(flush=True), timeout)
        except TimeoutError:
            log.warning("alerts not all sent within %g s; the next run sends them", timeout)
        except Exception:
            log.exception("alerts: the last round failed")

    async def aclose(self) -> None:
        for channel in (self._channels or {}).values():
            await channel.aclose()
        if self._owns_http and self._http is not None:
            await self._http.aclose()


def _count(n: int, one: str, many: str) -> str:
    return f"1 {one}" if n == 1 else f"{n} {many}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ChannelError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return f"no answer within {SEND_TIMEOUT:g} s"
    return repr(exc)


async def send_test_alert(
    settings: Settings, *, redact: Callable[[str], str] = str
) -> dict[str, str | None]:
    """``alerts test``: a test message to every channel now, without the ledger; returns
    each channel's error, or None where it was sent."""
    from ..ledger import open_ledger

    ledger = open_ledger(":memory:", settings.base_dir)
    alerter = Alerter(settings, ledger, redact=redact)
    where = settings.describe()
    subject = "test alert"
    body = (
        f"This is a test alert from postscheduler ({where}). Alerts about failed, "
        "unconfirmed and skipped posts, credentials and restarts will arrive here."
    )
    results: dict[str, str | None] = {}
    try:
        for name, channel in alerter.channels().items():
            try:
                await asyncio.wait_for(channel.send(subject, body), SEND_TIMEOUT)
            except (ChannelError, TimeoutError) as exc:
                results[name] = redact(_why(exc))
            else:
                results[name] = None
        for name in alerter.channel_names():
            results.setdefault(name, "the account cannot send (see the log)")
    finally:
        await alerter.aclose()
        ledger.close()
    return results
