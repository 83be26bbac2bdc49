"""What a person does to deliveries: send now, retry, resolve, check accounts.

Each function changes the ledger, then sends what it made due, either itself (when no daemon
holds the ledger) or by leaving it to the running daemon, which rescans the ledger every few
seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterable

from ..config import Settings
from ..errors import PostschedulerError, PublishError
from ..ledger import (
    CLAIMABLE_STATES,
    Delivery,
    DeliveryKey,
    DeliveryState,
    Ledger,
    LedgerLockedError,
    Pause,
    open_ledger,
)
from ..posts.render import render_post, target_accounts
from ..publishers import make_publisher
from ..redact import Redactor
from .checks import posts_to_publish
from .engine import Engine, utc_now
from .plan import content_hash
from .registration import registered


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation did: the deliveries it touched, as they are now."""

    deliveries: list[Delivery]
    sent_by_daemon: bool  # a running daemon holds the ledger and will send them


def _accounts(post_accounts: list[str], only: str | None) -> list[str]:
    if only is None:
        return post_accounts
    if only not in post_accounts:
        raise PostschedulerError(
            f"the post does not go to {only!r} (it goes to {', '.join(post_accounts)})"
        )
    return [only]


async def _send(settings: Settings, ledger: Ledger, groups: Iterable[tuple[str, str]]) -> bool:
    """Send ``groups`` now if no daemon holds the ledger; True if a daemon will instead."""
    if ledger.shared and ledger.daemons(utc_now()):
        return True  # the daemons' rescan finds them due; one claim wins
    try:
        with registered(settings, ledger, utc_now):
            engine = Engine(settings, ledger, redact=Redactor.for_settings(settings))
            engine.load(posts_to_publish(settings, utc_now()))
            try:
                for post_id, account in groups:
                    await engine.deliver(post_id, account)
            finally:
                await engine.aclose()
    except LedgerLockedError:
        return True
    return False


def _rows(ledger: Ledger, keys: Iterable[DeliveryKey]) -> list[Delivery]:
    return [row for key in keys if (row := ledger.get(key)) is not None]


def publish_now(settings: Settings, post_id: str, account: str | None = None) -> Outcome:
    """Send a post now instead of at its time; published parts are never sent again."""
    catalog = posts_to_publish(settings, utc_now())
    sp = catalog.get(post_id)
    errors = catalog.errors_for(post_id)
    if errors:
        raise PostschedulerError(
            f"post {post_id!r} has errors; fix them first:\n  "
            + "\n  ".join(f.as_text() for f in errors)
        )
    now = utc_now()
    keys: list[DeliveryKey] = []
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        for name in _accounts(target_accounts(sp.post, settings), account):
            for part in render_post(sp.post, name, settings).parts:
                key = DeliveryKey(post_id, name, part.index)
                row = ledger.plan(key, sp.post.at or now, content_hash(part), now)
                if row.state is DeliveryState.UNCONFIRMED:
                    raise PostschedulerError(
                        f"{key} may already have been published: settle it first with "
                        f"`postscheduler resolve {post_id} --account {name} --sent|--resend`"
                    )
                if row.state is not DeliveryState.PUBLISHED:
                    ledger.requeue(key, now, "publish --now", now)
                keys.append(key)
        groups = dict.fromkeys((k.post_id, k.account) for k in keys)
        by_daemon = asyncio.run(_send(settings, ledger, groups))
        return Outcome(_rows(ledger, keys), by_daemon)


def retry_failed(settings: Settings, post_id: str | None = None) -> Outcome:
    """Send failed deliveries again (all of them, or one post's)."""
    now = utc_now()
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        failed = ledger.deliveries(post_id=post_id, states=[DeliveryState.FAILED])
        if not failed:
            raise PostschedulerError(
                "nothing failed" + (f" for post {post_id!r}" if post_id else "")
            )
        for row in failed:
            ledger.requeue(row.key, now, "retry requested", now)
        groups = dict.fromkeys((r.key.post_id, r.key.account) for r in failed)
        by_daemon = asyncio.run(_send(settings, ledger, groups))
        return Outcome(_rows(ledger, [r.key for r in failed]), by_daemon)


def resolve_unconfirmed(settings: Settings, post_id: str, account: str, *, sent: bool) -> Outcome:
    """A person's answer for an unconfirmed delivery: it was sent, or send it again."""
    now = utc_now()
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        rows = ledger.deliveries(
            post_id=post_id, account=account, states=[DeliveryState.UNCONFIRMED]
        )
        if not rows:
            raise PostschedulerError(f"nothing of {post_id!r} to {account!r} is unconfirmed")
        for row in rows:
            if sent:
                ledger.record_published(row.key, None, None, now, detail="confirmed by hand")
            else:
                ledger.requeue(row.key, now, "resend requested by hand", now)
        by_daemon = False
        if not sent:
            by_daemon = asyncio.run(_send(settings, ledger, [(post_id, account)]))
        return Outcome(_rows(ledger, [r.key for r in rows]), by_daemon)


@dataclasses.dataclass(frozen=True, slots=True)
class AccountCheck:
    account: str
    platform: str
    ok: bool
    detail: str
    # Credentials that work now but will stop (a token expiring within two weeks).
    warnings: tuple[str, ...] = ()


async def check_accounts(settings: Settings, only: str | None = None) -> list[AccountCheck]:
    """Verify each account's credentials with its platform, concurrently."""
    import httpx

    names = [only] if only else list(settings.config.accounts)
    redact = Redactor.for_settings(settings)

    async def check(name: str, http: httpx.AsyncClient) -> AccountCheck:
        platform = settings.config.accounts[name].platform
        try:
            publisher = make_publisher(name, settings, http=http)
            try:
                detail = await publisher.check_credentials()
                warnings = publisher.credential_warnings(dt.datetime.now(dt.UTC))
            finally:
                await publisher.aclose()
        except PublishError as exc:
            return AccountCheck(name, platform, False, redact(exc.message))
        return AccountCheck(
            name, platform, True, redact(detail), tuple(redact(w) for w in warnings)
        )

    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as http:
        return list(await asyncio.gather(*(check(n, http) for n in names)))


def pause_publishing(
    settings: Settings,
    account: str | None = None,
    until: dt.datetime | None = None,
    reason: str | None = None,
) -> Pause:
    """Stop every daemon on the ledger from claiming anything for ``account`` (None: all
    accounts) until ``until`` or a resume; what is already in flight finishes."""
    from ..config import unknown_account_finding

    if account is not None and account not in settings.config.accounts:
        raise PostschedulerError(unknown_account_finding(account, settings).as_text())
    now = utc_now()
    if until is not None and until <= now:
        raise PostschedulerError(f"--until {until.isoformat()} is not in the future")
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        return ledger.pause(account, until, reason, now)


@dataclasses.dataclass(frozen=True, slots=True)
class Resumed:
    still: list[Pause]  # pauses still in force
    late: list[Delivery]  # held past late_grace: the daemon skips them as late
    sent_held: list[Delivery]  # held past late_grace and requeued (--send-held)


def resume_publishing(
    settings: Settings, account: str | None = None, *, send_held: bool = False
) -> Resumed:
    """End the pause of ``account`` (None: the pause of all accounts). What the pause held
    past ``late_grace`` is skipped as late by the daemon, or, with ``send_held``, requeued
    now, in the order it was due; the rest goes out as usual, in order."""
    now = utc_now()
    grace = settings.config.publishing.late_grace
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger, ledger.transaction():
        if not ledger.resume(account, now):
            scope = f"account {account}" if account else "all accounts"
            others = ", ".join(p.account or "all accounts" for p in ledger.pauses(now))
            raise PostschedulerError(
                f"{scope} is not paused" + (f" (paused: {others})" if others else "")
            )
        still = ledger.pauses(now)
        late = [
            row
            for row in ledger.deliveries(states=CLAIMABLE_STATES)
            if (account is None or row.key.account == account)
            and not any(p.covers(row.key.account, now) for p in still)
            and row.key.part == 0
            and row.attempts == 0
            and now - row.due_at > grace
        ]
        late.sort(key=lambda r: (r.due_at, r.key))
        if not send_held:
            # Skipped here, in the same transaction, so no daemon sends one meanwhile.
            for row in late:
                for part in ledger.deliveries(post_id=row.key.post_id, account=row.key.account):
                    ledger.record_skipped(part.key, "late, held by a pause", now)
            return Resumed(still, late, [])
        sent = [
            # A millisecond apart: the daemon sends them in the order they were due.
            ledger.requeue(
                row.key,
                now + dt.timedelta(milliseconds=i),
                "held by a pause; sent on resume --send-held",
                now,
            )
            for i, row in enumerate(late)
        ]
        return Resumed(still, [], sent)
