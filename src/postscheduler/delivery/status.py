"""``status`` and ``history``: what the ledger says, as data for the CLI to show."""

from __future__ import annotations

import dataclasses
import datetime as dt

from ..config import Settings
from ..errors import Finding, PostschedulerError
from ..ledger import Delivery, DeliveryState, Event, Ledger, Pause, open_ledger
from ..redact import Redactor


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    counts: dict[DeliveryState, int]
    next: Delivery | None  # the next delivery the daemon will attempt
    problems: tuple[Delivery, ...]  # failed and unconfirmed: a person must act
    # Later thread parts held back until the part they reply to is settled.
    waiting: tuple[Delivery, ...]
    # Deliveries whose post file has errors now: the first error, and when the delivery will
    # be skipped as late if nobody fixes it.
    held: tuple[tuple[Delivery, Finding, dt.datetime], ...] = ()
    pauses: tuple[Pause, ...] = ()  # in force now: nothing is claimed for what they cover


def open_existing_ledger(settings: Settings) -> Ledger:
    """The ledger, which must exist already (reading it must not create one)."""
    if not settings.ledger_path.exists():
        raise PostschedulerError(
            f"no ledger at {settings.ledger_path} yet: nothing has been planned or sent "
            "(`postscheduler run` creates it)"
        )
    return open_ledger(settings.config.ledger, settings.base_dir)


def _masked(settings: Settings, rows: list[Delivery]) -> list[Delivery]:
    """Reasons were masked when written; mask again with what is known now (a token kept
    since, a secret added to the configuration since)."""
    redact = Redactor.for_settings(settings)
    return [dataclasses.replace(r, reason=redact(r.reason)) if r.reason else r for r in rows]


def delivery_status(settings: Settings) -> Status:
    with open_existing_ledger(settings) as ledger:
        counts = ledger.counts()
        upcoming = ledger.deliveries(states=[DeliveryState.PLANNED, DeliveryState.RETRY])
        problems = ledger.deliveries(states=[DeliveryState.FAILED, DeliveryState.UNCONFIRMED])
        pauses = tuple(ledger.pauses(dt.datetime.now(dt.UTC)))
    problems = _masked(settings, problems)
    stuck = {(r.key.post_id, r.key.account): r.key.part for r in problems}
    waiting = [
        r for r in upcoming if r.key.part > stuck.get((r.key.post_id, r.key.account), r.key.part)
    ]
    upcoming = [r for r in upcoming if r not in waiting]
    held = _held(settings, upcoming)
    held_keys = {row.key for row, _, _ in held}
    upcoming = [r for r in upcoming if r.key not in held_keys]
    return Status(
        counts, upcoming[0] if upcoming else None, tuple(problems), tuple(waiting), held, pauses
    )


def _held(
    settings: Settings, upcoming: list[Delivery]
) -> tuple[tuple[Delivery, Finding, dt.datetime], ...]:
    from .checks import posts_to_publish

    if not upcoming:
        return ()
    catalog = posts_to_publish(settings, dt.datetime.now(dt.UTC))
    grace = settings.config.publishing.late_grace
    held = []
    for row in upcoming:
        errors = catalog.errors_for(row.key.post_id)
        if row.key.post_id in catalog.blocked_ids and errors:
            held.append((row, errors[0], row.due_at + grace))
    return tuple(held)


def delivery_history(
    settings: Settings, post_id: str | None = None, account: str | None = None
) -> list[tuple[Event, Delivery | None]]:
    """Every event, oldest first, each with its delivery as it is now (for the published
    one's remote URL and the hash of what it sent)."""
    with open_existing_ledger(settings) as ledger:
        events = ledger.events(post_id=post_id, account=account)
        rows = {key: ledger.get(key) for key in {e.key for e in events}}
    redact = Redactor.for_settings(settings)
    return [
        (dataclasses.replace(e, detail=redact(e.detail)) if e.detail else e, rows.get(e.key))
        for e in events
    ]
