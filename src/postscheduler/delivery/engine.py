"""From planned deliveries to published ones: sending, retrying, recovering (planning is
``plan.py``).

The engine is what ``run`` (the daemon) and ``run --once`` drive. It keeps the delivery
semantics the README promises ("The daemon and its guarantees"):

- every state change is committed to the ledger before the next network step;
- one account's thread parts go out in order, each a reply to the previous one, and a part
  is attempted only once the part before it is published;
- transient errors are retried with exponential backoff and jitter, honouring the platform's
  ``retry_after``; permanent ones fail at once with the platform's words;
- a publish whose outcome is unknown is resent only by an idempotent publisher; otherwise the
  delivery becomes ``unconfirmed`` and waits for a person;
- a delivery found due more than ``late_grace`` ago is skipped as late, loudly.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import hashlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..alerts import messages as alert_messages
from ..config import Settings
from ..errors import ImageError, LedgerError
from ..ledger import (
    CLAIMABLE_STATES,
    Alert,
    Delivery,
    DeliveryKey,
    DeliveryState,
    Ledger,
    Pause,
)
from ..ledger.worker import LedgerWorker
from ..posts.images import resolve_image_path
from ..posts.loader import Catalog, SourcedPost
from ..posts.render import RenderedPart, Rendering, render_post
from ..publishers import (
    OutcomeUnknownError,
    PermanentError,
    Published,
    Publisher,
    PublishError,
    PublishJob,
    Resolution,
    TransientError,
    make_publisher,
)
from ..publishers.base import delivery_identity
from .plan import PlanResult, content_hash, plan, valid_posts

if TYPE_CHECKING:
    from ..publishers.http import Clients
    from .metrics import Metrics

log = logging.getLogger("postscheduler")
LEDGER_RETRY_FIRST = 1.0  # seconds, doubling: writing an answer the ledger refused
LEDGER_RETRY_MAX = 60.0
# How often a delivery held by a pause looks again: a resume takes effect within this.
PAUSE_POLL = dt.timedelta(seconds=1)
# When a claim could not be made (the database gone, the lease run out): try again after.
CLAIM_RETRY = dt.timedelta(seconds=5)
DOUBT_FIRST_DELAY = 15.0  # seconds, doubling: asking a platform again about one in doubt
DOUBT_MAX_DELAY = 600.0


def _rendezvous(peer: str, account: str) -> bytes:
    return hashlib.blake2b(f"{peer}\0{account}".encode(), digest_size=8).digest()


class TakenOverError(Exception):
    """Another daemon took over a delivery this one had in flight (its lease ran out while it
    had no database): this one must take no further step for it."""


Clock = Callable[[], dt.datetime]
T = TypeVar("T")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def backoff(attempt: int, settings: Settings, retry_after: float | None) -> dt.timedelta:
    """Delay before attempt ``attempt + 1``: exponential with jitter, or what the platform
    asked, but never longer than ``retry.max_wait`` (a hint of years, or of infinity, from a
    broken or hostile server must not park the delivery)."""
    policy = settings.config.publishing.retry
    if retry_after is not None and math.isfinite(retry_after):
        wait = min(max(retry_after, 0.0), policy.max_wait.total_seconds())
        return dt.timedelta(seconds=wait)
    base = policy.first_delay.total_seconds() * (2 ** max(attempt - 1, 0))
    capped = min(base, policy.max_delay.total_seconds())
    return dt.timedelta(seconds=capped * random.uniform(0.5, 1.0))  # jitter, not crypto


class Engine:
    """Sends due deliveries for one catalog; created per run, reused across reloads."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        clock: Clock = utc_now,
        dry_run: bool = False,
        publishers: dict[str, Publisher] | None = None,
        http: Any = None,
        redact: Callable[[str], str] = str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        notify: Callable[[Alert], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        # Raises an alert without waiting (the alerter records it on its own task); failed,
        # unconfirmed and skipped deliveries reach it through the ledger's history instead.
        self.notify = notify or (lambda alert: None)
        # What start-up recovery found for each delivery left in flight, for the alert.
        self.recovered: list[tuple[DeliveryKey, str]] = []
        self.sleep = sleep  # a rehearsal's simulated clock advances instead of sleeping
        self.redact = redact  # every reason written to the ledger goes through it
        self.outcomes: dict[DeliveryKey, DeliveryState] = {}  # each delivery's end in this run
        self.ledger = ledger
        self.clock = clock
        self.dry_run = dry_run
        self.catalog = Catalog()
        self._publishers: dict[str, Publisher] = dict(publishers or {})
        self._http = http
        self._clients: Clients | None = None  # the engine's own, when no ``http`` is given
        self._account_index = {name: i for i, name in enumerate(settings.config.accounts)}
        self._posts: dict[str, SourcedPost] = {}
        # What the last plan accounted for, and as of which posts_repo fetch.
        self._planned: tuple[dict[str, SourcedPost | None], dt.datetime | None] | None = None
        self._worker: LedgerWorker | None = None
        self._account_locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._last_sent: dict[str, dt.datetime] = {}
        self._paused_seen: set[DeliveryKey] = set()  # held deliveries already logged
        self._was_paused: set[DeliveryKey] = set()  # held at some point: why one is late
        self._blackout_seen: set[tuple[DeliveryKey, dt.datetime]] = set()
        # When each account's recent posts went out (first parts), for the burst guard.
        self._recent: dict[str, collections.deque[dt.datetime]] = {}
        # Claimed (or being claimed) by this engine and not yet out of flight: a ``sending``
        # row of this daemon's that is not here was orphaned (the claim's commit was lost
        # with the database connection) and is recovered like a crash's.
        self._in_flight: set[DeliveryKey] = set()
        self._recovering = asyncio.Lock()
        # Deliveries whose platform could not be asked: when to ask next, and the delay then.
        self._ask_again: dict[DeliveryKey, tuple[dt.datetime, float]] = {}
        # When the posts were last brought up to date from posts_repo (None: the folder is
        # the truth): on a shared ledger, what another daemon planned since may be a post
        # this checkout has not fetched yet, neither deleted nor edited.
        self.posts_as_of: dt.datetime | None = None
        # The daemons alive on a shared ledger (this one among them), as last seen: each
        # account is first tried by one of them (see _first_try), so that they share the
        # work instead of all racing for every claim.
        self.peers: list[str] = []
        # Why nothing may be claimed or adopted now, if so (this machine's clock is off the
        # database's: leases would not mean what they say); set and cleared by the daemon.
        self.claims_held: str | None = None

    # --- posts and publishers ---------------------------------------------------------------

    def load(self, catalog: Catalog) -> PlanResult:
        """Plan the posts of ``catalog``: all of them the first time, then only those new,
        changed or gone since the last load (``plan``'s ``before``)."""
        self.catalog = catalog
        self._posts = valid_posts(catalog)
        before = recheck_since = None
        if self._planned is not None:
            before, as_of = self._planned
            if self.ledger.shared and as_of is not None and as_of != self.posts_as_of:
                recheck_since = as_of
        with self.ledger.transaction():  # one commit for the whole plan
            result = plan(
                catalog,
                self.settings,
                self.ledger,
                self.clock(),
                self.posts_as_of,
                before=before,
                recheck_since=recheck_since,
            )
        # Only once committed: a plan rolled back leaves the last one to start from.
        self._planned = (result.known, self.posts_as_of)
        return result

    def publisher(self, account: str) -> Publisher:
        if account not in self._publishers:
            from ..publishers import publisher_class

            platform = self.settings.config.accounts[account].platform
            http = self._http_client(account) if publisher_class(platform).uses_http else None
            self._publishers[account] = make_publisher(account, self.settings, http=http)
        return self._publishers[account]

    def prepare(self) -> None:
        """Create every account's publisher (and the HTTP client) now, so the first due
        delivery does not pay for imports and TLS set-up at its due time."""
        for account in self.settings.config.accounts:
            try:
                publisher = self.publisher(account)
            except PublishError as exc:
                log.error("account %s cannot publish: %s", account, exc.message)
                self.notify(
                    alert_messages.credential_alert(
                        account, f"{account} cannot publish: {exc.message}"
                    )
                )
                continue
            for warning in publisher.credential_warnings(self.clock()):
                log.warning("%s", self.redact(warning))
                self.notify(alert_messages.credential_alert(account, warning))

    def _http_client(self, account: str) -> Any:
        if self._http is not None:  # given (a test's transport): every account uses it
            return self._http
        if self._clients is None:
            # Only a run with an HTTP platform pays for importing httpx.
            from ..publishers.http import Clients

            # A read slower than 30 s: the outcome is unknown.
            self._clients = Clients(read=30.0, connect=10.0)
        return self._clients.client(self._account_index[account])

    async def aclose(self) -> None:
        for publisher in self._publishers.values():
            await publisher.aclose()
        if self._clients is not None:
            await self._clients.aclose()
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _post(self, post_id: str) -> SourcedPost | None:
        return self._posts.get(post_id)

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a ledger call on the ledger's own thread (with group commit): a commit waits
        for the disk while the event loop goes on sending other accounts' requests."""
        if self._worker is None:
            self._worker = LedgerWorker(self.ledger)
        return await self._worker.call(fn, *args)

    async def _record(self, fn: Callable[..., T], *args: Any) -> T:
        """Write what a platform answered. The request has been made, so the answer must not
        be lost: a write that fails (the disk full, the ledger locked) is tried again, backing
        off, for as long as it takes, and the account waits meanwhile, so nothing is sent
        twice or out of order."""
        delay = LEDGER_RETRY_FIRST
        while True:
            try:
                row = await self.db(fn, *args)
            except LedgerError as exc:
                log.error(
                    "cannot write to the ledger (%s); trying again in %g s: free the disk, or "
                    "stop the daemon and check %s",
                    exc,
                    delay,
                    self.settings.ledger_name,
                )
                self.notify(
                    alert_messages.trouble_alert(
                        "ledger",
                        "LEDGER UNUSABLE: publishing waits",
                        f"The daemon cannot write to its ledger {self.settings.ledger_name}: "
                        f"{exc}\n\nNothing more is sent until it can (what a platform "
                        "answered is kept and written as soon as the ledger takes it). What "
                        "to do: free the disk, or fix the file's permissions; if the ledger "
                        "was removed, stop the daemon and restore it from a backup.",
                    )
                )
            else:
                if isinstance(row, Delivery):
                    self.outcomes[row.key] = row.state  # what this run did, for run --once
                return row
            await self.sleep(delay)
            delay = min(delay * 2, LEDGER_RETRY_MAX)

    def _job(
        self,
        rendering: Rendering,
        part: RenderedPart,
        row: Delivery,
        identity: str,
        previous: list[Published],
    ) -> PublishJob:
        image_path = None
        if part.image is not None and part.image.file is not None:
            try:
                image_path = str(resolve_image_path(self.settings.posts_dir, part.image.file))
            except ImageError as exc:  # validated at load; the file may have gone since
                raise PermanentError(str(exc)) from None
        return PublishJob(
            key=row.key,
            identity=identity,
            text=part.text,
            image=part.image,
            image_path=image_path,
            link=rendering.link,
            language=rendering.content.language,
            content_warning=rendering.content.content_warning,
            reply_to=previous[-1] if previous else None,
            root=previous[0] if previous else None,
            parts=len(rendering.parts),
            due_at=row.due_at,
            attempt=row.attempts,
            sent_at=self.clock(),
            links=part.links,
            messages=part.messages,
            progress=row.progress,
            checkpoint=self._checkpoint(row.key),
        )

    def _checkpoint(self, key: DeliveryKey) -> Callable[[str], Awaitable[None]]:
        async def checkpoint(progress: str) -> None:
            row = await self._record(self.ledger.record_progress, key, progress, self.clock())
            if self.ledger.owner is not None and row.owner != self.ledger.owner:
                raise TakenOverError(f"{key} was taken over by daemon {row.owner or '-'}")

        return checkpoint

    # --- recovery ---------------------------------------------------------------------------

    def _in_doubt(self, now: dt.datetime) -> list[Delivery]:
        """What to resolve now: deliveries whose daemon is gone (adopted by this one), and
        this daemon's own ``sending`` rows it has no attempt for (an orphaned claim, or one
        whose platform could not be asked before), unless it is not yet time to ask again."""
        rows = {row.key: row for row in self.ledger.adopt_in_doubt(now)}
        owner = self.ledger.owner
        if owner is not None:
            for row in self.ledger.deliveries(states=[DeliveryState.SENDING]):
                if row.owner == owner and row.key not in self._in_flight:
                    rows.setdefault(row.key, row)
        return [
            row
            for row in sorted(rows.values(), key=lambda r: (r.due_at, r.key))
            if row.key not in self._ask_again or self._ask_again[row.key][0] <= now
        ]

    async def recover(self) -> int:
        """Resolve the deliveries a crash (of this daemon, or of another on a shared ledger)
        left ``sending``.

        Returns how many are still in doubt because their platform could not be asked just
        now (a network not up yet after a reboot): they stay ``sending``, asked again later.
        """
        async with self._recovering:
            await self._recover()
        return len(self._ask_again)

    async def _recover(self) -> None:
        if self.claims_held is not None:
            return  # who is gone cannot be told by leases now: resolved once it can
        for row in await self.db(self._in_doubt, self.clock()):
            key = row.key
            sp = self._post(key.post_id)
            outcome: Published | Resolution = Resolution.UNKNOWN
            if sp is not None and key.account in self.settings.config.accounts:
                rendering = render_post(sp.post, key.account, self.settings)
                if key.part < len(rendering.parts):
                    previous = await self._published_before(key)
                    publisher = self.publisher(key.account)
                    job = self._job(
                        rendering, rendering.parts[key.part], row, row.identity or "", previous
                    )
                    try:
                        outcome = await publisher.resolve_in_doubt(job)
                    except TransientError as exc:
                        log.warning("%s is in doubt; will ask again: %s", key, exc.message)
                        delay = self._ask_again.get(key, (self.clock(), DOUBT_FIRST_DELAY / 2))[1]
                        delay = min(delay * 2, DOUBT_MAX_DELAY)
                        self._ask_again[key] = (
                            self.clock() + dt.timedelta(seconds=delay),
                            delay,
                        )
                        continue
                    except PublishError as exc:
                        log.warning("could not resolve %s after a restart: %s", key, exc.message)
            self._ask_again.pop(key, None)
            now = self.clock()
            if isinstance(outcome, Published):
                await self.db(
                    self.ledger.record_published,
                    key,
                    outcome.remote_id,
                    outcome.url,
                    now,
                    "confirmed after restart",
                )
                log.info("recovered %s: it was published before the restart", key)
                self.recovered.append(
                    (key, f"it was published: {outcome.url or outcome.remote_id}")
                )
            elif outcome is Resolution.NOT_SENT:
                await self.db(
                    self.ledger.record_retry, key, now, "in flight at a restart; safe to send", now
                )
                log.info("recovered %s: not sent before the restart; sending again", key)
                self.recovered.append((key, "it was not sent: sending it now"))
            else:
                await self._record(
                    self.ledger.record_unconfirmed,
                    key,
                    "in flight when the daemon stopped; the platform cannot tell whether it "
                    "was published: check the account, then `postscheduler resolve`",
                    now,
                )
                log.error("UNCONFIRMED %s: may or may not have been published", key)
                self.recovered.append((key, "unknown: unconfirmed, check the account"))

    async def _published_before(self, key: DeliveryKey) -> list[Published]:
        out = []
        for part in range(key.part):
            row = await self.db(self.ledger.get, DeliveryKey(key.post_id, key.account, part))
            if row is None or row.state is not DeliveryState.PUBLISHED:
                break
            out.append(Published(row.remote_id, row.remote_url))
        return out

    # --- delivering -------------------------------------------------------------------------

    def due_groups(self, until: dt.datetime) -> list[tuple[str, str]]:
        """(post id, account) pairs with a delivery due by ``until``, soonest first."""
        seen: dict[tuple[str, str], None] = {}
        for row in self.ledger.iter_due(until):
            seen.setdefault((row.key.post_id, row.key.account), None)
        return list(seen)

    async def run_due(self, until: dt.datetime | None = None) -> dict[tuple[str, str], Any]:
        """Deliver everything due by ``until`` (default: now); accounts in parallel."""
        groups = self.due_groups(until or self.clock())
        results = await asyncio.gather(*(self.deliver(p, a) for p, a in groups))
        return dict(zip(groups, results, strict=True))

    async def deliver(self, post_id: str, account: str) -> dt.datetime | None:
        """Send the due parts of ``post_id`` to ``account``, in order.

        Returns when to call again (a retry time), or None when nothing is left to do now.
        """
        sp = self._post(post_id)
        if sp is None:
            if post_id in self.catalog.blocked_ids:
                log.warning(
                    "held %s → %s: its post file has errors (run validate)", post_id, account
                )
            return None
        if account not in self.settings.config.accounts:
            return None
        async with self._account_locks[account]:
            return await self._deliver_locked(sp, account)

    async def _deliver_locked(self, sp: SourcedPost, account: str) -> dt.datetime | None:
        post = sp.post
        rendering = render_post(post, account, self.settings)
        previous: list[Published] = []
        for part in rendering.parts:
            key = DeliveryKey(post.id, account, part.index)
            row, pause = await self.db(self.ledger.get_unless_paused, key, self.clock())
            if row is None:
                return None
            if row.state is DeliveryState.PUBLISHED:
                previous.append(Published(row.remote_id, row.remote_url))
                continue
            if row.state not in CLAIMABLE_STATES:
                return None  # failed, unconfirmed, skipped or in flight: not ours to send
            now = self.clock()
            if row.next_attempt_at > now:
                return row.next_attempt_at
            if row.due_at > now:
                return row.due_at
            handoff = self._first_try(account, row)
            if handoff is not None and now < handoff:
                return handoff
            if self.ledger.shared and row.content_hash != content_hash(part):
                # Another daemon's checkout planned another version (newer, or older while
                # this one is ahead and has not re-planned yet): the text sent must be the
                # one planned and previewed, so the daemon whose posts match sends it.
                log.info("%s: another version is planned (another daemon's posts)", key)
                return None
            # Held, not late, while paused: what resume finds late is skipped then, or sent
            # (resume --send-held).
            held = self._held_by_pause(key, pause, now)
            if held is None:
                held = self._held_by_blackout(key, now)
            if held is None:
                held = await self._held_by_burst_guard(row, now)
            if held is not None:
                return held
            if await self._skip_if_stale(sp, rendering, part.index, row, now):
                return None
            await self._wait_for_gap(account)
            if self.dry_run:
                log.info("dry run: would publish %s:\n%s", key, part.text)
                return None
            if self.claims_held is not None:
                return self.clock() + CLAIM_RETRY  # said by the daemon, once
            try:
                publisher = self.publisher(account)
            except PublishError as exc:  # no publisher for this platform in this version
                if await self.db(self.ledger.claim, key, delivery_identity(key), self.clock()):
                    await self._record(self.ledger.record_failed, key, exc.message, self.clock())
                    log.error("FAILED %s: %s", key, exc.message)
                return None
            self._in_flight.add(key)
            try:
                # The pause again (one recorded while min_gap was being waited out holds
                # this delivery too), the account's holds, and the claim: one round trip.
                now = self.clock()
                try:
                    attempt = await self.db(
                        self.ledger.claim_unless_held,
                        key,
                        publisher.identity(key, now),
                        self._gap(account) if self.ledger.shared else dt.timedelta(0),
                        now,
                    )
                except LedgerError as exc:
                    # Nothing was sent. If the claim did commit before the connection went,
                    # the row is this daemon's and orphaned: recovery finds it.
                    log.warning("could not claim %s, trying again soon: %s", key, exc)
                    return self.clock() + CLAIM_RETRY
                if attempt.pause is not None:
                    return self._held_by_pause(key, attempt.pause, now)
                if attempt.held is not None:
                    until, reason = attempt.held
                    log.info(
                        "%s waits until %s: %s",
                        account,
                        until.isoformat(timespec="seconds"),
                        reason,
                    )
                    return until
                claimed = attempt.claimed
                if claimed is None:
                    return None
                result = await self._attempt(publisher, rendering, part, claimed, previous)
            finally:
                self._in_flight.discard(key)
            if not isinstance(result, Published):
                return result
            previous.append(result)
        return None

    def _held_by_pause(
        self, key: DeliveryKey, pause: Pause | None, now: dt.datetime
    ) -> dt.datetime | None:
        """When to look again if ``pause`` (read from the ledger with the row, and again
        with the claim, so nothing is claimed once a pause is recorded) holds ``key``'s
        account, else None."""
        if pause is None:
            self._paused_seen.discard(key)
            return None
        if key not in self._paused_seen:
            self._paused_seen.add(key)
            self._was_paused.add(key)
            scope = "every account" if pause.account is None else pause.account
            until = pause.until.isoformat(timespec="minutes") if pause.until else "resume"
            log.warning(
                "PAUSED %s: held by the pause of %s (until %s%s)",
                key,
                scope,
                until,
                f": {pause.reason}" if pause.reason else "",
            )
        again = now + PAUSE_POLL
        return min(again, pause.until) if pause.until is not None else again

    def _held_by_blackout(self, key: DeliveryKey, now: dt.datetime) -> dt.datetime | None:
        """The end of the blackout ``now`` falls in for the account (a retry, a post whose
        window was added since it was planned), else None."""
        hit = self.settings.config.blackout_at(now, key.account)
        if hit is None:
            return None
        window, end = hit
        if (key, end) not in self._blackout_seen:
            self._blackout_seen.add((key, end))
            log.warning(
                "BLACKOUT %s: held by %r until %s",
                key,
                window.name,
                end.isoformat(timespec="minutes"),
            )
        return end

    def _sent(self, key: DeliveryKey, now: dt.datetime) -> None:
        self._last_sent[key.account] = now
        recent = self._recent.get(key.account)
        if recent is not None and key.part == 0:
            recent.append(now)

    async def _held_by_burst_guard(self, row: Delivery, now: dt.datetime) -> dt.datetime | None:
        """With ``max_per_hour`` posts already out on the account in the last hour, move
        the delivery to when the oldest of them is an hour old, say so, and return that."""
        key = row.key
        cfg = self.settings.config
        limit = cfg.accounts[key.account].max_per_hour or cfg.publishing.max_per_hour
        if limit is None or key.part != 0:  # a thread's later parts follow their first
            return None
        hour = dt.timedelta(hours=1)
        recent = self._recent.get(key.account)
        # What went out before this process started counts too; on a shared ledger, what
        # the other daemons sent, so the ledger is read each time.
        if recent is None or self.ledger.shared:
            account, since = key.account, now - hour
            rows = await self.db(
                lambda: self.ledger.deliveries(account=account, changed_since=since)
            )
            recent = collections.deque(
                sorted(
                    r.updated_at
                    for r in rows
                    if r.key.part == 0
                    and r.updated_at is not None
                    and r.state in (DeliveryState.PUBLISHED, DeliveryState.SENDING)
                    and r.updated_at > now - hour
                )
            )
            self._recent[key.account] = recent
        while recent and recent[0] <= now - hour:
            recent.popleft()
        if len(recent) < limit:
            return None
        release = recent[0] + hour
        reason = f"held by the burst guard: {limit} posts in the last hour on {key.account}"
        await self._record(self.ledger.requeue, key, release, reason, now)
        log.warning("BURST GUARD %s: %s; due again at %s", key, reason, release.isoformat())
        self.notify(
            alert_messages.trouble_alert(
                "burst",
                f"BURST GUARD: {key.account} is holding posts back",
                f"{key.account} already had {limit} posts in the last hour (publishing."
                "max_per_hour), so the next ones wait: the first goes at "
                f"{release.astimezone(cfg.zone).strftime('%H:%M %Z')}.\n\nIf this is a "
                "mistaken mass edit, `postscheduler pause --account "
                f"{key.account}` now and check the queue (`postscheduler queue --account "
                f"{key.account}`); if the posts are meant, raise max_per_hour.",
                scope=f"{key.account}:{now.strftime('%Y-%m-%dT%H')}",  # once an hour at most
            )
        )
        return release

    async def _skip_if_stale(
        self,
        sp: SourcedPost,
        rendering: Rendering,
        index: int,
        row: Delivery,
        now: dt.datetime,
    ) -> bool:
        post = sp.post
        reason = None
        if post.expires is not None and now >= post.expires:
            reason = "expired"
        elif (
            index == 0
            and row.attempts == 0
            and now - row.due_at > self.settings.config.publishing.late_grace
        ):
            # Only a thread that has not started is late: once its first part is out, the
            # rest follows, or readers would see half a thread.
            reason = "late, held by a pause" if row.key in self._was_paused else "late"
        if reason is None:
            return False
        for part in rendering.parts[index:]:
            await self._record(
                self.ledger.record_skipped,
                DeliveryKey(post.id, rendering.account, part.index),
                reason,
                now,
            )
        log.warning(
            "SKIPPED %s → %s: %s (due %s, now %s)",
            post.id,
            rendering.account,
            reason,
            row.due_at.isoformat(timespec="seconds"),
            now.isoformat(timespec="seconds"),
        )
        return True

    def _first_try(self, account: str, row: Delivery) -> dt.datetime | None:
        """When this daemon may try ``row`` if another daemon has the first try at its
        account (None: this one has, or it is alone). Accounts are shared out by rendezvous
        hashing over the live daemons, so one joining or leaving moves only its share; the
        others try a delivery a quarter lease after its time, in case the first one cannot
        send it (its checkout lacks the post or the account) or is gone. The claim still
        decides who sends: this only keeps the daemons from racing for every delivery."""
        handoff = self._handoff(account)
        return None if handoff is None else max(row.due_at, row.next_attempt_at) + handoff

    def first_look_at(self, account: str, when: dt.datetime) -> dt.datetime:
        """When this daemon should first look at a delivery to ``account`` due at ``when``
        (see ``_first_try``): scheduled then, the deliveries another daemon has the first
        try at do not queue their ledger reads before this one's own at the due instant."""
        handoff = self._handoff(account)
        return when if handoff is None else when + handoff

    def _handoff(self, account: str) -> dt.timedelta | None:
        me = self.ledger.owner
        if not self.ledger.shared or me is None or len(self.peers) < 2:
            return None
        first = max(self.peers, key=lambda peer: _rendezvous(peer, account))
        if first == me:
            return None
        return self.settings.config.publishing.lease / 4

    def _gap(self, account: str) -> dt.timedelta:
        cfg = self.settings.config
        return cfg.accounts[account].min_gap or cfg.publishing.min_gap

    async def _wait_for_gap(self, account: str) -> None:
        gap = self._gap(account)
        last = self._last_sent.get(account)
        if last is not None and gap:
            wait = (last + gap - self.clock()).total_seconds()
            if wait > 0:
                await self.sleep(wait)

    async def _attempt(
        self,
        publisher: Publisher,
        rendering: Rendering,
        part: RenderedPart,
        row: Delivery,
        previous: list[Published],
    ) -> Published | dt.datetime | None:
        if self.metrics is None:
            return await self._attempt_once(publisher, rendering, part, row, previous)
        started = time.monotonic()
        result = await self._attempt_once(publisher, rendering, part, row, previous)
        if isinstance(result, Published):
            outcome = "published"
        elif result is not None:
            outcome = "retry"
        else:
            outcome = self.outcomes.get(row.key, DeliveryState.FAILED).value
        self.metrics.attempt(
            publisher.platform,
            row.key.account,
            outcome,
            time.monotonic() - started,
            self.clock() - row.due_at,
        )
        return result

    async def _attempt_once(
        self,
        publisher: Publisher,
        rendering: Rendering,
        part: RenderedPart,
        row: Delivery,
        previous: list[Published],
    ) -> Published | dt.datetime | None:
        key = row.key
        attempt = row.attempts
        job: PublishJob | None = None
        try:
            job = self._job(rendering, part, row, row.identity or "", previous)
            published = await publisher.publish(job)
        except TakenOverError as exc:
            log.warning("stopped sending %s: %s", key, exc)
            return None
        except TransientError as exc:
            return await self._retry_or_fail(
                key, attempt, self.redact(exc.message), exc.retry_after
            )
        except OutcomeUnknownError as exc:
            assert job is not None  # only publish() raises it
            return await self._unknown(publisher, job, attempt, self.redact(exc.message))
        except PermanentError as exc:
            message = self.redact(exc.message)
            await self._record(self.ledger.record_failed, key, message, self.clock())
            log.error("FAILED %s attempt %d: %s", key, attempt, message)
            return None
        except Exception as exc:  # a bug or an unexpected library error, mid-request
            log.exception("error while publishing %s attempt %d", key, attempt)
            message = self.redact(f"unexpected error: {exc!r}")
            if job is None:  # nothing was sent: the job could not even be made
                await self._mark_unconfirmed(key, attempt, message)
                return None
            return await self._unknown(publisher, job, attempt, message)
        now = self.clock()
        done = await self._record(
            self.ledger.record_published, key, published.remote_id, published.url, now
        )
        if done.state is not DeliveryState.PUBLISHED:
            # Another daemon took it over while this one had no database, and decided
            # otherwise: its word stands; this one goes no further with the thread.
            log.error(
                "%s was published (%s), but the ledger says %s (taken over by another "
                "daemon): check the account for a duplicate",
                key,
                published.url or published.remote_id,
                done.state.value,
            )
            return None
        self._sent(key, now)
        log.info("published %s attempt %d: %s", key, attempt, published.url or published.remote_id)
        return published

    async def _retry_or_fail(
        self,
        key: DeliveryKey,
        attempt: int,
        message: str,
        retry_after: float | None,
        *,
        in_doubt: bool = False,
    ) -> dt.datetime | None:
        now = self.clock()
        if attempt >= self.settings.config.publishing.retry.attempts:
            if in_doubt:
                # It may be out: "failed" would invite a resend that could post it twice.
                await self._mark_unconfirmed(key, attempt, f"after {attempt} attempts: {message}")
                return None
            reason = f"gave up after {attempt} attempts: {message}"
            await self._record(self.ledger.record_failed, key, reason, now)
            log.error("FAILED %s attempt %d: %s", key, attempt, reason)
            return None
        retry_at = now + backoff(attempt, self.settings, retry_after)
        await self._record(self.ledger.record_retry, key, retry_at, message, now)
        if retry_after is not None:
            # The platform said when to come back: to the account, not to this post only.
            try:
                await self.db(self.ledger.hold_account, key.account, retry_at, message)
            except LedgerError as exc:
                log.warning("could not hold %s until its rate limit resets: %s", key.account, exc)
        log.warning(
            "retry %s attempt %d: %s; next attempt at %s",
            key,
            attempt,
            message,
            retry_at.isoformat(timespec="seconds"),
        )
        return retry_at

    async def _unknown(
        self, publisher: Publisher, job: PublishJob, attempt: int, message: str
    ) -> Published | dt.datetime | None:
        key = job.key
        if publisher.idempotent:
            return await self._retry_or_fail(
                key, attempt, f"outcome unknown ({message})", None, in_doubt=True
            )
        # Before a person is asked, the platform may be: the post among the account's recent
        # ones (Facebook, LinkedIn), a container that says it was published (Instagram).
        row = await self.db(self.ledger.get, key)
        if row is not None:  # with what the attempt recorded on its way (the container)
            job = dataclasses.replace(job, progress=row.progress)
        try:
            outcome = await publisher.resolve_in_doubt(job)
        except PublishError as exc:
            log.warning("could not look for %s on %s: %s", key, key.account, exc.message)
            outcome = Resolution.UNKNOWN
        except Exception:  # a bug in the look-up must not lose the delivery
            log.exception("error while looking for %s on %s", key, key.account)
            outcome = Resolution.UNKNOWN
        if isinstance(outcome, Published):
            now = self.clock()
            await self._record(
                self.ledger.record_published,
                key,
                outcome.remote_id,
                outcome.url,
                now,
                f"found on {key.account} after: {message}",
            )
            self._sent(key, now)
            log.info("published %s attempt %d (found after %s)", key, attempt, message)
            return outcome
        if outcome is Resolution.NOT_SENT:
            return await self._retry_or_fail(
                key, attempt, f"not sent ({message})", None, in_doubt=True
            )
        await self._mark_unconfirmed(key, attempt, message)
        return None

    async def _mark_unconfirmed(self, key: DeliveryKey, attempt: int, message: str) -> None:
        await self._record(
            self.ledger.record_unconfirmed,
            key,
            f"{message}; it may have been published: check the account, then "
            f"`postscheduler resolve {key.post_id} --account {key.account} --sent|--resend`",
            self.clock(),
        )
        log.error("UNCONFIRMED %s attempt %d: %s", key, attempt, message)
