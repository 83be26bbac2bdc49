"""``calendar``: every delivery in a span of days, as data for the page (``calendar_html``).

Upcoming posts come from the files (with each account's mock-up, from the same preview code
as ``preview``); with a ledger, what went out, failed, is unconfirmed or was skipped comes
from it, with links and reasons. Posts held by errors in their files are shown on the day
the ledger has them planned (or listed apart when it has not), with the error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from ..config import Settings
from ..errors import Finding
from ..ledger import Delivery, DeliveryState, Pause, open_ledger
from ..posts.agenda import first_line
from ..posts.loader import Catalog
from ..posts.preview import ImageView, Preview, preview_sourced
from ..posts.render import target_accounts
from ..posts.rules import validate
from .queue import delivery_label

DEFAULT_DAYS = 28
MAX_DAYS = 366


@dataclasses.dataclass(frozen=True, slots=True)
class AccountDay:
    account: str
    state: str  # queued, paused, published, failed, unconfirmed, skipped, retry, sending, held
    url: str | None = None
    reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CalendarEntry:
    post_id: str
    when: dt.datetime  # in the configuration's zone
    words: str
    where: str  # file:line
    accounts: tuple[AccountDay, ...]
    preview: Preview | None  # None: held by errors (no rendering to show)
    errors: tuple[Finding, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Calendar:
    start: dt.date  # a Monday
    days: int
    zone: dt.tzinfo
    entries: tuple[CalendarEntry, ...]
    accounts: tuple[str, ...]  # configured, in order: their colours
    pauses: tuple[Pause, ...]
    drafts: tuple[str, ...]
    held: tuple[Finding, ...]  # errors of posts the calendar cannot place on a day
    has_ledger: bool


def _where(catalog: Catalog, post_id: str, settings: Settings) -> str:
    for file, mark in catalog.id_sites.get(post_id, []):
        if file.is_relative_to(settings.base_dir):
            file = file.relative_to(settings.base_dir)
        return f"{file}:{mark.line}"
    return ""


def build_calendar(
    settings: Settings,
    *,
    start: dt.datetime,
    days: int | None = None,
    account: str | None = None,
    now: dt.datetime,
) -> Calendar:
    """``days`` None: at least four weeks, and on to the last post due (a campaign planned
    months ahead shows all of it; at most a year)."""
    zone = settings.config.zone
    catalog = validate(settings, now=now)
    if days is None:
        times = [sp.post.at for sp in catalog.posts if sp.post.at and sp.post.at >= start]
        last = max(times, default=start)
        days = min(max(DEFAULT_DAYS, (last - start).days + 1), MAX_DAYS)
    asked = start.astimezone(zone).date()
    first = asked - dt.timedelta(days=asked.weekday())  # whole weeks, from a Monday
    weeks = -(-((asked - first).days + days) // 7)
    days = weeks * 7
    begin = dt.datetime.combine(first, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(first + dt.timedelta(days=days), dt.time(0), tzinfo=zone)
    rows: dict[tuple[str, str], list[Delivery]] = {}
    pauses: list[Pause] = []
    has_ledger = settings.ledger_exists()
    if has_ledger:
        with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
            for row in ledger.deliveries():
                rows.setdefault((row.key.post_id, row.key.account), []).append(row)
            pauses = ledger.pauses(now)

    def account_day(post_id: str, name: str, held: bool) -> AccountDay:
        mine = sorted(rows.get((post_id, name), []), key=lambda r: r.key.part)
        state = delivery_label({r.state for r in mine}) if mine else "queued"
        if held and state == "queued":
            state = "held"
        elif state in ("queued", "retry") and any(p.covers(name, now) for p in pauses):
            state = "paused"
        url = next((r.remote_url for r in mine if r.remote_url), None)
        reason = next(
            (
                r.reason
                for r in mine
                if r.reason
                and r.state
                in (DeliveryState.FAILED, DeliveryState.UNCONFIRMED, DeliveryState.SKIPPED)
            ),
            None,
        )
        return AccountDay(name, state, url, reason)

    images: dict[str, ImageView] = {}
    entries = []
    drafts = []
    for sp in catalog.posts:
        post = sp.post
        if post.is_draft or post.at is None:
            drafts.append(post.id)
            continue
        if not begin <= post.at < end:
            continue
        targets = [a for a in target_accounts(post, settings) if a in settings.config.accounts]
        if account is not None:
            if account not in targets:
                continue
            targets = [account]
        entries.append(
            CalendarEntry(
                post.id,
                post.at.astimezone(zone),
                first_line(catalog, post.id),
                _where(catalog, post.id, settings),
                tuple(account_day(post.id, a, False) for a in targets),
                preview_sourced(sp, catalog, settings, targets, images),
            )
        )
    held_apart: list[Finding] = []
    for post_id in sorted(catalog.blocked_ids):
        errors = tuple(f for f in catalog.findings if f.post_id == post_id and f.is_error)
        planned = [r for (p, _), rs in rows.items() if p == post_id for r in rs]
        if not planned:
            held_apart.extend(errors)
            continue
        when = min(r.scheduled_at for r in planned)
        if not begin <= when < end:
            continue
        names = sorted({r.key.account for r in planned if account in (None, r.key.account)})
        if not names:
            continue
        entries.append(
            CalendarEntry(
                post_id,
                when.astimezone(zone),
                errors[0].message if errors else "",
                _where(catalog, post_id, settings),
                tuple(account_day(post_id, a, True) for a in names),
                None,
                errors,
            )
        )
    held_apart += [f for f in catalog.findings if f.is_error and f.post_id is None]
    held_apart = [
        dataclasses.replace(f, file=f.file.relative_to(settings.base_dir))
        if f.file is not None and f.file.is_relative_to(settings.base_dir)
        else f
        for f in held_apart
    ]
    entries.sort(key=lambda e: (e.when, e.post_id))
    return Calendar(
        first,
        days,
        zone,
        tuple(entries),
        tuple(settings.config.accounts),
        tuple(pauses),
        tuple(sorted(drafts)),
        tuple(held_apart),
        has_ledger,
    )
