"""``status`` and ``history``: what the ledger says, as data for the CLI to show."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Iterator

from ..config import Settings
from ..errors import Finding, PostschedulerError
from ..ledger import (
    DaemonInfo,
    Delivery,
    DeliveryKey,
    DeliveryState,
    Event,
    Ledger,
    Pause,
    open_ledger,
)
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
    daemons: tuple[DaemonInfo, ...] = ()  # alive now (lease not run out), oldest first


def open_existing_ledger(settings: Settings) -> Ledger:
    """The ledger, which must exist already (reading it must not create one)."""
    if not settings.ledger_exists():
        raise PostschedulerError(
            f"no ledger at {settings.ledger_name} yet: nothing has been planned or sent "
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
        now = dt.datetime.now(dt.UTC)
        pauses = tuple(ledger.pauses(now))
        daemons = tuple(ledger.daemons(now))
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
        counts,
        upcoming[0] if upcoming else None,
        tuple(problems),
        tuple(waiting),
        held,
        pauses,
        daemons,
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


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, DeliveryKey):
        return {"post_id": value.post_id, "account": value.account, "part": value.part}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def export_ledger(settings: Settings) -> Iterator[dict[str, object]]:
    """The whole ledger as JSON-ready records, for backups and moving it: every delivery with
    its history (oldest first), the pauses, the alerts and where each was sent. Reasons are
    masked again with the secrets known now."""
    redact = Redactor.for_settings(settings)
    now = dt.datetime.now(dt.UTC)
    with open_existing_ledger(settings) as ledger:
        history: dict[DeliveryKey, list[Event]] = {}
        for event in ledger.events():
            history.setdefault(event.key, []).append(event)
        rows = ledger.deliveries()
        pauses = ledger.pauses(now)
        sends = ledger.alert_sends(limit=None)
    for row in rows:
        record = _jsonable(dataclasses.replace(row, reason=redact(row.reason or "") or None))
        assert isinstance(record, dict)
        record["events"] = [
            {**_event_record(e), "detail": redact(e.detail) if e.detail else None}
            for e in history.get(row.key, [])
        ]
        yield {"type": "delivery", **record}
    for pause in pauses:
        yield {"type": "pause", **_record(pause)}
    for send in reversed(sends):  # oldest first, as the rest
        yield {"type": "alert", **_record(send)}


def _record(value: object) -> dict[str, object]:
    record = _jsonable(value)
    assert isinstance(record, dict)
    return record


def _event_record(event: Event) -> dict[str, object]:
    record = _record(event)
    record.pop("key", None)  # the delivery it belongs to says it
    return record


@dataclasses.dataclass(frozen=True, slots=True)
class Migrated:
    target: str  # without its password
    rows: dict[str, int]  # per table


MIGRATE_CHUNK = 5000  # rows a transaction of the copy carries


def migrate_ledger(
    settings: Settings, target: str, progress: Callable[[int, int], None] | None = None
) -> Migrated:
    """Copy the configured SQLite ledger, every row and its whole history, into the empty
    PostgreSQL database ``target`` (``${VAR}`` allowed), ids kept. ``progress(done, total)``
    after each chunk of rows. The source is only read; it stays the ledger until the
    configuration says otherwise."""
    from ..ledger.sqlite import COPIED_TABLES, SqliteLedger
    from ..urls import without_password

    if settings.ledger_is_url:
        raise PostschedulerError(
            f"the configured ledger is already a database ({settings.ledger_name}): "
            "ledger migrate copies a SQLite ledger"
        )
    if not target.startswith(("postgresql://", "postgres://")):
        raise PostschedulerError(f"--to must be a postgresql:// URL, not {target!r}")
    shown = without_password(target)
    with open_existing_ledger(settings) as source, open_ledger(target, settings.base_dir) as dest:
        assert isinstance(source, SqliteLedger) and isinstance(dest, SqliteLedger)
        if not dest.is_empty():
            raise PostschedulerError(
                f"{shown} already holds a ledger: nothing was copied (a copy into a ledger in "
                "use would mix two histories); give an empty database"
            )
        with source.acquire_daemon_lock():  # no daemon writes to it meanwhile
            tables = {table: source.table_rows(table) for table in COPIED_TABLES}
            total = sum(len(rows) for _, rows in tables.values())
            done = 0
            for table, (columns, rows) in tables.items():
                for start in range(0, len(rows), MIGRATE_CHUNK):
                    chunk = rows[start : start + MIGRATE_CHUNK]
                    dest.load_rows(table, columns, chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    return Migrated(shown, {table: len(rows) for table, (_, rows) in tables.items()})
