"""The ledger: what was planned, attempted and published, one row per delivery.

A delivery is one thread part of one post to one account. Its state moves

    planned ─► sending ─► published (remote id, url)
       ▲          ├─────► retry (retry_at) ─► sending ...
       │          ├─────► failed (the platform's reason)
       │          └─────► unconfirmed (outcome unknown; a person decides)
       └── skipped (late, expired, draft, deleted) ◄── planned

and every change is committed before the next network step, so after a crash the ledger says
exactly which deliveries were in flight (``sending``): those are *in doubt*, and only their
publisher can say whether resending them is safe.

Implementations: ``sqlite.SqliteLedger`` (one daemon, the default). A PostgreSQL ledger for
several daemons must keep the same contract: ``claim`` is the only way into ``sending`` and
succeeds for exactly one caller, and ``acquire_daemon_lock`` is exclusive per ledger.

Its exceptions, ``LedgerError`` and ``LedgerLockedError``, are in ``postscheduler.errors``.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager


class DeliveryState(enum.StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    PUBLISHED = "published"
    RETRY = "retry"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"
    SKIPPED = "skipped"


# States from which the daemon may start an attempt.
CLAIMABLE_STATES = frozenset({DeliveryState.PLANNED, DeliveryState.RETRY})
# Skips that end when the post is seen again (the file is back, the draft is ready).
REVIVING_SKIPS = frozenset({"deleted", "draft"})


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class DeliveryKey:
    post_id: str
    account: str
    part: int = 0

    def __str__(self) -> str:
        return f"{self.post_id} → {self.account}" + (f" part {self.part + 1}" if self.part else "")


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """A ledger row."""

    key: DeliveryKey
    state: DeliveryState
    due_at: dt.datetime  # when to send: the post's time, or sooner if a person asked
    scheduled_at: dt.datetime  # the post's time when it was last planned
    content_hash: str
    attempts: int = 0
    identity: str | None = None  # chosen before the first attempt: idempotency key, rkey...
    retry_at: dt.datetime | None = None
    remote_id: str | None = None
    remote_url: str | None = None
    reason: str | None = None
    updated_at: dt.datetime | None = None
    # What a multi-step publish did so far (a container id), in the publisher's own words.
    progress: str | None = None
    # The daemon whose claim put it in flight (``sending``), while it is.
    owner: str | None = None

    @property
    def next_attempt_at(self) -> dt.datetime:
        """When the daemon next tries it: its retry time while waiting to retry, else its
        due time."""
        if self.state is DeliveryState.RETRY and self.retry_at is not None:
            return self.retry_at
        return self.due_at


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One line of a delivery's history."""

    at: dt.datetime
    key: DeliveryKey
    state: DeliveryState
    attempt: int
    detail: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Pause:
    """An emergency pause: nothing is claimed for ``account`` (None: every account) from
    ``since`` until ``until`` (None: until a person resumes)."""

    account: str | None
    since: dt.datetime
    until: dt.datetime | None
    reason: str | None

    def covers(self, account: str, now: dt.datetime) -> bool:
        return self.account in (None, account) and (self.until is None or now < self.until)


@dataclasses.dataclass(frozen=True, slots=True)
class DaemonInfo:
    """A daemon registered on the ledger: alive while ``lease_until`` is ahead."""

    id: str
    host: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    lease_until: dt.datetime
    in_flight: int = 0  # its deliveries ``sending`` now


class AlertState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"  # as a message of its own, or within a summary (``message`` says which)
    FAILED = "failed"  # the channel refused it for a day: given up, logged


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """What a person is told. ``dedupe`` names the event: an alert is raised once per event,
    however many times (reloads, restarts) it is seen."""

    kind: str
    dedupe: str
    subject: str
    body: str
    post_id: str | None = None
    account: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AlertSend:
    """One alert on its way to one channel (an alert account, or ``smtp``)."""

    id: int
    channel: str
    alert: Alert
    created_at: dt.datetime
    state: AlertState
    attempts: int
    next_at: dt.datetime
    error: str | None = None
    sent_at: dt.datetime | None = None


def replans(current: Delivery, scheduled_at: dt.datetime, content_hash: str) -> bool:
    """Whether ``Ledger.plan`` makes ``current`` due again at ``scheduled_at``: the post's
    time changed, or a skipped post came back (undeleted, no longer a draft, rewritten)."""
    return current.state in (DeliveryState.PLANNED, DeliveryState.SKIPPED) and (
        current.scheduled_at != scheduled_at
        or (
            current.state is DeliveryState.SKIPPED
            and (current.reason in REVIVING_SKIPS or current.content_hash != content_hash)
        )
    )


def plan_changes(current: Delivery | None, scheduled_at: dt.datetime, content_hash: str) -> bool:
    """Whether ``Ledger.plan`` would change ``current`` (None: not in the ledger yet): a plan
    of thousands of unchanged posts reads their rows at once and plans only these. Besides
    ``replans``, a delivery not yet attempted takes new words."""
    if current is None or replans(current, scheduled_at, content_hash):
        return True
    return current.state in CLAIMABLE_STATES and current.content_hash != content_hash


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimAttempt:
    """What ``Ledger.claim_unless_held`` found: the claimed row, or what holds the account
    (a pause, or a hold with its end and reason), or neither (not claimable any more)."""

    claimed: Delivery | None = None
    pause: Pause | None = None
    held: tuple[dt.datetime, str] | None = None


class Ledger(abc.ABC):
    """Durable delivery state. Every method commits before it returns."""

    @abc.abstractmethod
    def plan(
        self, key: DeliveryKey, scheduled_at: dt.datetime, content_hash: str, now: dt.datetime
    ) -> Delivery:
        """Make sure ``key`` is planned for the post's time ``scheduled_at``; return its row.

        A delivery not yet attempted whose post time changed is due at the new time; one whose
        words alone changed keeps its due time (a ``publish --now`` stays now); one skipped as
        deleted or draft is planned again, one skipped as late or expired only with a new time
        or new words; one waiting to retry keeps its retry time; one in flight or done is
        returned unchanged.
        """

    @abc.abstractmethod
    def claim(self, key: DeliveryKey, identity: str, now: dt.datetime) -> Delivery | None:
        """Move a planned or retrying delivery to ``sending``, or return None.

        Exactly one caller wins. The identity is kept from the first claim on, so every
        attempt of a delivery presents the same one to an idempotent platform.
        """

    @abc.abstractmethod
    def record_published(
        self,
        key: DeliveryKey,
        remote_id: str | None,
        remote_url: str | None,
        now: dt.datetime,
        detail: str | None = None,
    ) -> Delivery: ...

    @abc.abstractmethod
    def record_retry(
        self, key: DeliveryKey, retry_at: dt.datetime, reason: str, now: dt.datetime
    ) -> Delivery: ...

    @abc.abstractmethod
    def record_failed(self, key: DeliveryKey, reason: str, now: dt.datetime) -> Delivery: ...

    @abc.abstractmethod
    def record_unconfirmed(self, key: DeliveryKey, reason: str, now: dt.datetime) -> Delivery: ...

    @abc.abstractmethod
    def record_skipped(self, key: DeliveryKey, reason: str, now: dt.datetime) -> Delivery:
        """Skip a delivery that has not started (planned or retry); others are unchanged."""

    @abc.abstractmethod
    def requeue(
        self, key: DeliveryKey, due_at: dt.datetime, reason: str, now: dt.datetime
    ) -> Delivery:
        """A person's decision to send now or again (publish --now, retry, resolve --resend):
        planned, due at ``due_at``. Published and in-flight deliveries are unchanged."""

    @abc.abstractmethod
    def record_progress(self, key: DeliveryKey, progress: str, now: dt.datetime) -> Delivery:
        """Keep what an attempt in flight has done so far (an Instagram container id) before
        its next step, so an attempt after a crash or a lost answer can ask about it. Only a
        ``sending`` delivery records it; it is forgotten when the words change. A person's
        requeue keeps it: a resend of a post that did go out is then found, not repeated."""

    @abc.abstractmethod
    def pause(
        self, account: str | None, until: dt.datetime | None, reason: str | None, now: dt.datetime
    ) -> Pause:
        """Stop claims for ``account`` (None: all), until ``until`` or a resume. Kept in the
        ledger, so every daemon on it obeys; a second pause of the same scope replaces it."""

    @abc.abstractmethod
    def resume(self, account: str | None, now: dt.datetime) -> bool:
        """End the pause of exactly this scope; False when there was none."""

    @abc.abstractmethod
    def pauses(self, now: dt.datetime) -> list[Pause]:
        """The pauses in force at ``now``."""

    def paused(self, account: str, now: dt.datetime) -> Pause | None:
        """The pause holding ``account`` at ``now``, if any."""
        return next((p for p in self.pauses(now) if p.covers(account, now)), None)

    # --- alerts: deliveries of their own, to the people who run the campaign ---------------

    @abc.abstractmethod
    def raise_alert(self, alert: Alert, channels: Iterable[str], now: dt.datetime) -> bool:
        """Queue ``alert`` for each channel; False (and nothing queued) when an alert with
        its ``dedupe`` was raised before."""

    @abc.abstractmethod
    def alerts_pending(self, channel: str) -> list[AlertSend]:
        """Alerts still to send on ``channel``, oldest first."""

    @abc.abstractmethod
    def record_alerts(
        self,
        channel: str,
        ids: Iterable[int],
        state: AlertState,
        now: dt.datetime,
        *,
        next_at: dt.datetime | None = None,
        error: str | None = None,
    ) -> None:
        """After one message carrying these alerts: SENT; PENDING again at ``next_at``
        (one attempt more) when the channel failed; FAILED when it is given up."""

    @abc.abstractmethod
    def alert_messages_since(self, channel: str, since: dt.datetime) -> int:
        """How many messages ``channel`` was sent since ``since`` (a summary is one)."""

    @abc.abstractmethod
    def take_alert_turn(self, channel: str) -> bool:
        """Whether this process may send ``channel``'s pending alerts now: on a ledger
        several daemons share, one at a time, or an alert whose message is on its way (an
        SMTP server taking its time) is sent again by every other daemon. Until
        ``end_alert_turn``; a daemon that dies gives its turn up with its connection."""

    @abc.abstractmethod
    def end_alert_turn(self, channel: str) -> None:
        """The end of a turn ``take_alert_turn`` gave."""

    @abc.abstractmethod
    def alert_sends(self, limit: int | None = 50) -> list[AlertSend]:
        """The newest alerts on every channel, newest first (None: all of them)."""

    @abc.abstractmethod
    def events_after(self, event_id: int, limit: int = 1000) -> list[tuple[int, Event]]:
        """History lines after ``event_id``, oldest first, with their ids."""

    @abc.abstractmethod
    def alert_cursor(self) -> int | None:
        """The last history line turned into alerts; None before the first time."""

    @abc.abstractmethod
    def set_alert_cursor(self, event_id: int) -> None: ...

    @abc.abstractmethod
    def last_event_id(self) -> int: ...

    @abc.abstractmethod
    def note_edit_reported(self, key: DeliveryKey, content_hash: str, now: dt.datetime) -> bool:
        """Record that an edit of a published delivery (its words now hash to
        ``content_hash``) was reported; True the first time, so each edit is logged once."""

    @abc.abstractmethod
    def get(self, key: DeliveryKey) -> Delivery | None: ...

    @abc.abstractmethod
    def deliveries(
        self,
        *,
        post_id: str | None = None,
        account: str | None = None,
        states: Iterable[DeliveryState] | None = None,
        changed_since: dt.datetime | None = None,
        due_by: dt.datetime | None = None,
    ) -> list[Delivery]:
        """Rows matching every given filter, by due time then key. ``due_by``: only those
        whose next attempt (``Delivery.next_attempt_at``) is at or before it."""

    @abc.abstractmethod
    def states_of(self, post_ids: Iterable[str]) -> dict[tuple[str, str], set[DeliveryState]]:
        """(post, account) → the states of its parts, for these posts only: what the queue
        shows, without reading the whole history of a long campaign."""

    @abc.abstractmethod
    def events(self, *, post_id: str | None = None, account: str | None = None) -> list[Event]:
        """History, oldest first."""

    @abc.abstractmethod
    def counts(self) -> dict[DeliveryState, int]: ...

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Group the calls made inside into one commit (made when the block ends), so a
        burst of state changes costs one write to disk. Calls still commit before they
        return when no transaction is open. Nothing inside may be acted on (no request
        sent) until the block has ended."""

    @abc.abstractmethod
    def acquire_daemon_lock(self) -> AbstractContextManager[None]:
        """Hold this ledger for one daemon; raise LedgerLockedError if another has it (a
        ledger several daemons share lets every one through: they register instead)."""

    # --- daemons: who is alive, and whose deliveries are in flight ------------------------

    # Whether several daemons may work on this ledger at once.
    shared: bool = False
    # The daemon this process registered as (claims carry it); None when not registered.
    owner: str | None = None

    def clock_skew(self, now: dt.datetime) -> dt.timedelta | None:
        """How far ``now`` (this machine's clock) is ahead of the database server's (behind:
        negative); None where there is no other clock (a file on this machine). Leases are
        written and compared with each daemon's own clock, so a daemon whose clock is off
        by about a lease would take a live daemon's deliveries in flight for abandoned, or
        have its own taken: see ``Daemon._check_clock``."""
        return None

    @abc.abstractmethod
    def register(
        self,
        daemon_id: str,
        host: str,
        pid: int,
        lease: dt.timedelta,
        now: dt.datetime,
        may_replace: Callable[[str, int], bool] | None = None,
    ) -> None:
        """Register this process as daemon ``daemon_id``, alive until ``now + lease`` unless
        renewed. What an earlier process with this id left in flight is in doubt from now.

        On a shared ledger, where a registration of ``daemon_id`` is still live (its lease
        not run out) and ``may_replace(its host, its pid)`` says it is not a dead earlier
        process of this daemon, raise DaemonIdInUseError and change nothing: of processes
        registering one id at once, at most one succeeds."""

    @abc.abstractmethod
    def heartbeat(self, now: dt.datetime) -> bool:
        """Renew the lease; False when it had run out before (another daemon may have taken
        over deliveries in flight meanwhile), in which case it is registered anew."""

    @abc.abstractmethod
    def unregister(self, now: dt.datetime) -> None:
        """End the registration: what is still in flight is in doubt at once."""

    @abc.abstractmethod
    def daemons(self, now: dt.datetime) -> list[DaemonInfo]:
        """The daemons alive at ``now``, with what each has in flight."""

    @abc.abstractmethod
    def reserve_account(
        self, account: str, gap: dt.timedelta, now: dt.datetime
    ) -> tuple[dt.datetime, str] | None:
        """Before a claim for ``account``: None if nothing holds it now, in which case it is
        held for ``gap`` (its ``min_gap``; zero reserves nothing), else until when it is
        held and why. Of daemons reserving one account at once, exactly one wins."""

    def claim_unless_held(
        self, key: DeliveryKey, identity: str, gap: dt.timedelta, now: dt.datetime
    ) -> ClaimAttempt:
        """``paused``, then ``reserve_account``, then ``claim``, in one transaction: what a
        delivery asks just before it is sent, in one round trip to the ledger rather than
        three (500 accounts due at one instant wait for each round in turn)."""
        with self.transaction():
            pause = self.paused(key.account, now)
            if pause is not None:
                return ClaimAttempt(pause=pause)
            held = self.reserve_account(key.account, gap, now)
            if held is not None:
                return ClaimAttempt(held=held)
            return ClaimAttempt(claimed=self.claim(key, identity, now))

    def get_unless_paused(
        self, key: DeliveryKey, now: dt.datetime
    ) -> tuple[Delivery | None, Pause | None]:
        """``get`` and ``paused`` in one round trip: a delivery's first look at the ledger."""
        with self.transaction():
            return self.get(key), self.paused(key.account, now)

    @abc.abstractmethod
    def hold_account(self, account: str, until: dt.datetime, reason: str) -> None:
        """Hold ``account`` until ``until`` (a rate limit's reset), for every daemon; a
        longer hold already there stays."""

    @abc.abstractmethod
    def adopt_in_doubt(self, now: dt.datetime) -> list[Delivery]:
        """Take over the deliveries in doubt: ``sending`` rows whose daemon is gone (its
        lease ran out, or it never registered). Each is adopted by exactly one daemon, so
        only one asks its platform about it; a live daemon's are never touched."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counts_by_account(self) -> dict[tuple[str, DeliveryState], int]:
        """Deliveries per (account, state), for the metrics."""
        counts: dict[tuple[str, DeliveryState], int] = {}
        for row in self.deliveries():
            key = (row.key.account, row.state)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def writable(self) -> str | None:
        """None when a write would be taken now; else why not (for ``/healthz``)."""
        return None

    def replaced(self) -> bool:
        """Whether the ledger's storage was removed or replaced under this process."""
        return False

    def in_doubt(self) -> list[Delivery]:
        """Deliveries a crash left in flight: nobody knows whether they went out."""
        return self.deliveries(states=[DeliveryState.SENDING])

    def iter_due(self, until: dt.datetime) -> Iterator[Delivery]:
        """Claimable deliveries due (or due to retry) by ``until``."""
        yield from self.deliveries(states=CLAIMABLE_STATES, due_by=until)
