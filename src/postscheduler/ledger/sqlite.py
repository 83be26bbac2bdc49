"""SQLite ledger: one file beside the project, WAL mode, every change committed at once."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import inspect
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import (
    DaemonIdInUseError,
    LeaseLostError,
    LedgerError,
    LedgerLockedError,
    LedgerUnreachableError,
)
from .base import (
    CLAIMABLE_STATES,
    Alert,
    AlertSend,
    AlertState,
    DaemonInfo,
    Delivery,
    DeliveryKey,
    DeliveryState,
    Event,
    Ledger,
    Pause,
    plan_changes,
    replans,
)

# Named migrations, applied in order and recorded in schema_migrations. Never edit one that
# has shipped: add the next.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_deliveries_and_events",
        """
        CREATE TABLE deliveries (
            post_id      TEXT    NOT NULL,
            account      TEXT    NOT NULL,
            part         INTEGER NOT NULL,
            state        TEXT    NOT NULL,
            due_at       TEXT    NOT NULL,
            scheduled_at TEXT    NOT NULL,
            content_hash TEXT    NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            identity     TEXT,
            retry_at     TEXT,
            remote_id    TEXT,
            remote_url   TEXT,
            reason       TEXT,
            updated_at   TEXT    NOT NULL,
            PRIMARY KEY (post_id, account, part)
        );
        CREATE INDEX deliveries_by_state ON deliveries (state, due_at);
        CREATE TABLE events (
            id      INTEGER PRIMARY KEY AUTOINCREMENT,
            at      TEXT    NOT NULL,
            post_id TEXT    NOT NULL,
            account TEXT    NOT NULL,
            part    INTEGER NOT NULL,
            state   TEXT    NOT NULL,
            attempt INTEGER NOT NULL,
            detail  TEXT
        );
        CREATE INDEX events_by_post ON events (post_id, account);
        """,
    ),
    (
        "0002_edits_reported",
        """
        CREATE TABLE edits_reported (
            post_id      TEXT    NOT NULL,
            account      TEXT    NOT NULL,
            part         INTEGER NOT NULL,
            content_hash TEXT    NOT NULL,
            at           TEXT    NOT NULL,
            PRIMARY KEY (post_id, account, part, content_hash)
        );
        """,
    ),
    (
        # What a multi-step publish has done so far (an Instagram or Threads container id),
        # written before the step that publishes, so a restart can ask about it.
        "0003_progress",
        "ALTER TABLE deliveries ADD COLUMN progress TEXT;",
    ),
    (
        # An emergency pause, for one account or ('') for all, until a time or a resume.
        "0004_pauses",
        """
        CREATE TABLE pauses (
            account TEXT PRIMARY KEY,
            since   TEXT NOT NULL,
            until   TEXT,
            reason  TEXT
        );
        """,
    ),
    (
        # Alerts, once per event (dedupe), and their way to each channel; the cursor is the
        # last history line turned into alerts, so a crash between the two loses none.
        "0005_alerts",
        """
        CREATE TABLE alerts (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            dedupe     TEXT    NOT NULL UNIQUE,
            kind       TEXT    NOT NULL,
            subject    TEXT    NOT NULL,
            body       TEXT    NOT NULL,
            post_id    TEXT,
            account    TEXT,
            created_at TEXT    NOT NULL
        );
        CREATE TABLE alert_sends (
            alert_id INTEGER NOT NULL REFERENCES alerts (id),
            channel  TEXT    NOT NULL,
            state    TEXT    NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at  TEXT    NOT NULL,
            error    TEXT,
            sent_at  TEXT,
            message  INTEGER,
            PRIMARY KEY (alert_id, channel)
        );
        CREATE INDEX alert_sends_by_state ON alert_sends (channel, state);
        CREATE TABLE alert_cursor (
            name     TEXT    PRIMARY KEY,
            event_id INTEGER NOT NULL
        );
        """,
    ),
    (
        # Several daemons on one (PostgreSQL) ledger: each registers with a lease it renews;
        # a claim names its daemon, so a delivery in flight is in doubt only once that
        # daemon's lease has run out.
        "0006_daemons",
        """
        CREATE TABLE daemons (
            id           TEXT    PRIMARY KEY,
            host         TEXT    NOT NULL,
            pid          INTEGER NOT NULL,
            started_at   TEXT    NOT NULL,
            heartbeat_at TEXT    NOT NULL,
            lease_until  TEXT    NOT NULL,
            lease_ms     INTEGER NOT NULL
        );
        ALTER TABLE deliveries ADD COLUMN owner TEXT;
        """,
    ),
    (
        # An account held by min_gap or by the platform's rate limit, for every daemon
        # sending to it (one daemon's memory is not enough when several share the ledger).
        "0007_account_holds",
        """
        CREATE TABLE account_holds (
            account TEXT PRIMARY KEY,
            until   TEXT NOT NULL,
            reason  TEXT NOT NULL
        );
        """,
    ),
]

MIN_FREE_BYTES = 10_000_000  # below this, /healthz says the ledger's disk is full

# What a ledger holds, in the order a copy loads it (a table before those that refer to it).
COPIED_TABLES = (
    "deliveries",
    "events",
    "edits_reported",
    "pauses",
    "alerts",
    "alert_sends",
    "alert_cursor",
)

_COLUMNS = (
    "post_id, account, part, state, due_at, scheduled_at, content_hash, attempts, identity, "
    "retry_at, "
    "remote_id, remote_url, reason, updated_at, progress, owner"
)


def _ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    # Fixed width UTC text sorts like the instants it names.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_ts(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(value)  # C code, reads the trailing Z as UTC


_STATES = {state.value: state for state in DeliveryState}


def _row(row: sqlite3.Row) -> Delivery:
    """A delivery from a row of ``_COLUMNS``, read by position: queue, status and every plan
    read thousands of rows, and names and the Enum call cost several times more."""
    (post_id, account, part, state, due_at, scheduled_at, content_hash, attempts, identity,
     retry_at, remote_id, remote_url, reason, updated_at, progress, owner) = row  # fmt: skip
    return Delivery(
        key=DeliveryKey(post_id, account, part),
        state=_STATES[state],
        due_at=dt.datetime.fromisoformat(due_at),
        scheduled_at=dt.datetime.fromisoformat(scheduled_at),
        content_hash=content_hash,
        attempts=attempts,
        identity=identity,
        retry_at=_from_ts(retry_at),
        remote_id=remote_id,
        remote_url=remote_url,
        reason=reason,
        updated_at=_from_ts(updated_at),
        progress=progress,
        owner=owner,
    )


def _event_of(r: sqlite3.Row) -> Event:
    at = _from_ts(r["at"])
    assert at is not None
    return Event(
        at,
        DeliveryKey(r["post_id"], r["account"], r["part"]),
        DeliveryState(r["state"]),
        r["attempt"],
        r["detail"],
    )


def _as_ledger_errors(cls: type[Ledger]) -> type[Ledger]:
    """Every public method raises LedgerError, with SQLite's words, for what goes wrong on
    the disk (full, a corrupted page, a read-only file): callers handle one exception, and a
    command says what happened instead of printing a traceback."""

    def wrap(name: str, method: Any) -> Any:
        @functools.wraps(method)
        def wrapped(self: SqliteLedger, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except self.DRIVER_ERRORS as exc:
                kind = LedgerUnreachableError if self._out_of_reach(exc) else LedgerError
                raise kind(f"the ledger {self.path}: {name} failed: {exc}") from None

        return wrapped

    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value) and name not in _NOT_WRAPPED:
            setattr(cls, name, wrap(name, value))
    return cls


# Context managers: what goes wrong inside them is the caller's to report.
_NOT_WRAPPED = frozenset({"transaction", "acquire_daemon_lock"})


@_as_ledger_errors
class SqliteLedger(Ledger):
    """The default ledger. ``path`` may be ``:memory:`` for tests."""

    # What the database driver raises: each becomes a LedgerError with its words.
    DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
    MIGRATIONS = MIGRATIONS
    # Who registered (host, pid, lease), to register again if the row was lost.
    _registration: tuple[str, int, dt.timedelta] = ("", 0, dt.timedelta(seconds=30))

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._depth = 0
        self._file_id: tuple[int, int] | None = None
        if self.path != ":memory:" and not Path(self.path).exists():
            lock = Path(self.path + ".lock")
            if lock.exists():
                # A daemon used a ledger here: a fresh one would send again everything
                # published within late_grace. A person decides, knowing that.
                raise LedgerError(
                    f"the ledger {self.path} is missing, but a daemon has used it ({lock} is "
                    "there): restore it from a backup. To start again from nothing, delete "
                    f"{lock}; posts due within late_grace would then be sent again"
                )
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we open every transaction ourselves (BEGIN IMMEDIATE),
            # so a write never waits behind an implicit read transaction.
            # The daemon runs ledger calls on a thread of their own; the lock keeps one call
            # at a time on the connection, whichever thread makes it.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit has reached the disk before the HTTP request that follows it.
            self._db.execute("PRAGMA synchronous=FULL")
            self._file_id = self._current_file_id()  # the file exists once WAL is set
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise LedgerError(f"cannot open the ledger {self.path}: {reason}") from None

    # --- plumbing -------------------------------------------------------------------------

    def _current_file_id(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        try:
            info = Path(self.path).stat()
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    def replaced(self) -> bool:
        """Whether the ledger file was removed or replaced since it was opened (a `git clean`,
        a redeploy): writing on would go to a file nobody will read again."""
        return self._file_id is not None and self._current_file_id() != self._file_id

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        # The block's own calls raise LedgerError already; what is left is the BEGIN and
        # the COMMIT (a database gone between two batches).
        try:
            with self._write():
                yield
        except self.DRIVER_ERRORS as exc:
            raise LedgerError(f"the ledger {self.path}: a transaction failed: {exc}") from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:  # inside transaction(): the outer block commits
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            if self.replaced():
                raise LedgerError(
                    f"the ledger {self.path} was removed or replaced while in use: nothing more "
                    "is written; stop the daemon and restore the ledger before starting again"
                )
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {r[0] for r in db.execute("SELECT name FROM schema_migrations")}
            known = {name for name, _ in self.MIGRATIONS}
            unknown = done - known
            if unknown:
                raise LedgerError(
                    f"the ledger {self.path} was written by a newer postscheduler "
                    f"(migrations {', '.join(sorted(unknown))}): upgrade postscheduler"
                )
            for name, sql in self.MIGRATIONS:
                if name in done:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)",
                    (name, _ts(dt.datetime.now(dt.UTC))),
                )

    def migrations(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM schema_migrations ORDER BY name")]

    def _select(self, db: sqlite3.Connection, key: DeliveryKey) -> Delivery | None:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM deliveries WHERE post_id=? AND account=? AND part=?",
            (key.post_id, key.account, key.part),
        ).fetchone()
        return _row(row) if row else None

    def _event(
        self,
        db: sqlite3.Connection,
        key: DeliveryKey,
        state: DeliveryState,
        attempt: int,
        now: dt.datetime,
        detail: str | None,
    ) -> None:
        db.execute(
            "INSERT INTO events (at, post_id, account, part, state, attempt, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_ts(now), key.post_id, key.account, key.part, state.value, attempt, detail),
        )

    def _transition(
        self,
        key: DeliveryKey,
        to: DeliveryState,
        now: dt.datetime,
        *,
        allowed_from: Iterable[DeliveryState],
        detail: str | None = None,
        **columns: Any,
    ) -> Delivery:
        allowed = [s.value for s in allowed_from]
        with self._write() as db:
            current = self._select(db, key)
            if current is None:
                raise LedgerError(f"no delivery {key} in the ledger")
            if current.state.value not in allowed or not self._ours(current):
                return current  # not ours to change: the caller reads the state it got
            # Out of flight: it belongs to no daemon any more.
            sets = ", ".join(f"{c}=?" for c in ("state", "updated_at", *columns)) + ", owner=NULL"
            # RETURNING: the row as written without reading it again (a round trip less on
            # PostgreSQL, for every delivery's outcome).
            (updated,) = db.execute(
                f"UPDATE deliveries SET {sets} WHERE post_id=? AND account=? AND part=? "
                f"RETURNING {_COLUMNS}",
                (to.value, _ts(now), *columns.values(), key.post_id, key.account, key.part),
            ).fetchall()
            self._event(db, key, to, current.attempts, now, detail)
        return _row(updated)

    def _ours(self, row: Delivery) -> bool:
        """Whether this process may move ``row`` on: not while another live daemon has it
        in flight (a delivery this one lost to a takeover while it had no database)."""
        return (
            row.state is not DeliveryState.SENDING
            or self.owner is None
            or row.owner in (None, self.owner)
        )

    # --- the contract ---------------------------------------------------------------------

    def plan(
        self, key: DeliveryKey, scheduled_at: dt.datetime, content_hash: str, now: dt.datetime
    ) -> Delivery:
        with self._write() as db:
            current = self._select(db, key)
            if current is not None and not plan_changes(current, scheduled_at, content_hash):
                return current  # as planned already: the common case of every reload
            where = (key.post_id, key.account, key.part)
            if current is None:
                inserted = db.execute(
                    f"INSERT INTO deliveries ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL, NULL, NULL, NULL, ?, NULL, NULL) "
                    "ON CONFLICT DO NOTHING",
                    (
                        *where,
                        DeliveryState.PLANNED.value,
                        _ts(scheduled_at),
                        _ts(scheduled_at),
                        content_hash,
                        _ts(now),
                    ),
                ).rowcount
                # Not inserted: another daemon planned it a moment ago, from the same posts.
                if inserted:
                    self._event(db, key, DeliveryState.PLANNED, 0, now, f"due {_ts(scheduled_at)}")
            elif replans(current, scheduled_at, content_hash):
                # Due at the post's time, whatever a person asked before. A post skipped as
                # late or expired stays skipped until it is given a new time.
                db.execute(
                    "UPDATE deliveries SET state=?, due_at=?, scheduled_at=?, content_hash=?, "
                    "reason=NULL, progress=NULL, updated_at=? "
                    "WHERE post_id=? AND account=? AND part=?",
                    (
                        DeliveryState.PLANNED.value,
                        _ts(scheduled_at),
                        _ts(scheduled_at),
                        content_hash,
                        _ts(now),
                        *where,
                    ),
                )
                self._event(
                    db,
                    key,
                    DeliveryState.PLANNED,
                    current.attempts,
                    now,
                    f"due {_ts(scheduled_at)}",
                )
            else:  # what plan_changes leaves: only the words of one not yet attempted
                # Keep the time, which may be a `publish --now`. What an earlier attempt
                # prepared (a container) holds the old words: forget it.
                db.execute(
                    "UPDATE deliveries SET content_hash=?, progress=NULL, updated_at=? "
                    "WHERE post_id=? AND account=? AND part=?",
                    (content_hash, _ts(now), *where),
                )
            result = self._select(db, key)
        assert result is not None
        return result

    def claim(self, key: DeliveryKey, identity: str, now: dt.datetime) -> Delivery | None:
        claimable = tuple(s.value for s in CLAIMABLE_STATES)
        marks = ",".join("?" * len(claimable))
        with self._write() as db:
            if self.owner is not None and not self._alive(db, self.owner, now):
                raise LeaseLostError(
                    f"this daemon's lease on the ledger {self.path} ran out: it claims "
                    "nothing until the lease is renewed"
                )
            rows = db.execute(
                "UPDATE deliveries SET state=?, attempts=attempts+1, "
                "identity=COALESCE(identity, ?), retry_at=NULL, updated_at=?, owner=? "
                f"WHERE post_id=? AND account=? AND part=? AND state IN ({marks}) "
                f"RETURNING {_COLUMNS}",
                (
                    DeliveryState.SENDING.value,
                    identity,
                    _ts(now),
                    self.owner,
                    key.post_id,
                    key.account,
                    key.part,
                    *claimable,
                ),
            ).fetchall()
            if len(rows) != 1:
                return None
            claimed = _row(rows[0])
            self._event(db, key, DeliveryState.SENDING, claimed.attempts, now, None)
        return claimed

    def record_published(
        self,
        key: DeliveryKey,
        remote_id: str | None,
        remote_url: str | None,
        now: dt.datetime,
        detail: str | None = None,
    ) -> Delivery:
        return self._transition(
            key,
            DeliveryState.PUBLISHED,
            now,
            allowed_from=[DeliveryState.SENDING, DeliveryState.UNCONFIRMED],
            detail=detail or remote_url or remote_id,
            remote_id=remote_id,
            remote_url=remote_url,
            reason=None,
        )

    def record_retry(
        self, key: DeliveryKey, retry_at: dt.datetime, reason: str, now: dt.datetime
    ) -> Delivery:
        return self._transition(
            key,
            DeliveryState.RETRY,
            now,
            allowed_from=[DeliveryState.SENDING],
            detail=reason,
            retry_at=_ts(retry_at),
            reason=reason,
        )

    def record_failed(self, key: DeliveryKey, reason: str, now: dt.datetime) -> Delivery:
        return self._transition(
            key,
            DeliveryState.FAILED,
            now,
            allowed_from=[DeliveryState.SENDING, DeliveryState.RETRY],
            detail=reason,
            reason=reason,
        )

    def record_unconfirmed(self, key: DeliveryKey, reason: str, now: dt.datetime) -> Delivery:
        return self._transition(
            key,
            DeliveryState.UNCONFIRMED,
            now,
            allowed_from=[DeliveryState.SENDING],
            detail=reason,
            reason=reason,
        )

    def record_skipped(self, key: DeliveryKey, reason: str, now: dt.datetime) -> Delivery:
        return self._transition(
            key,
            DeliveryState.SKIPPED,
            now,
            allowed_from=CLAIMABLE_STATES,
            detail=reason,
            reason=reason,
            retry_at=None,
        )

    def requeue(
        self, key: DeliveryKey, due_at: dt.datetime, reason: str, now: dt.datetime
    ) -> Delivery:
        return self._transition(
            key,
            DeliveryState.PLANNED,
            now,
            allowed_from=[
                DeliveryState.PLANNED,
                DeliveryState.FAILED,
                DeliveryState.UNCONFIRMED,
                DeliveryState.RETRY,
                DeliveryState.SKIPPED,
            ],
            detail=reason,
            due_at=_ts(due_at),
            retry_at=None,
            reason=None,
        )

    def record_progress(self, key: DeliveryKey, progress: str, now: dt.datetime) -> Delivery:
        # Only its own attempt's: not one another daemon has taken over.
        mine = "" if self.owner is None else " AND (owner IS NULL OR owner=?)"
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET progress=?, updated_at=? "
                f"WHERE post_id=? AND account=? AND part=? AND state=?{mine}",
                (
                    progress,
                    _ts(now),
                    key.post_id,
                    key.account,
                    key.part,
                    DeliveryState.SENDING.value,
                    *(() if self.owner is None else (self.owner,)),
                ),
            )
            current = self._select(db, key)
        if current is None:
            raise LedgerError(f"no delivery {key} in the ledger")
        return current

    # --- daemons --------------------------------------------------------------------------

    def _alive(self, db: Any, daemon_id: str, now: dt.datetime) -> bool:
        row = db.execute(
            "SELECT 1 FROM daemons WHERE id=? AND lease_until>?", (daemon_id, _ts(now))
        ).fetchone()
        return row is not None

    def register(
        self,
        daemon_id: str,
        host: str,
        pid: int,
        lease: dt.timedelta,
        now: dt.datetime,
        may_replace: Callable[[str, int], bool] | None = None,
    ) -> None:
        with self._write() as db:
            if not self.shared:
                # One daemon at a time (the daemon lock): any other registered is dead.
                db.execute("DELETE FROM daemons WHERE id<>?", (daemon_id,))
            elif may_replace is not None:
                self._lock_daemon_id(db, daemon_id)
                row = db.execute(
                    "SELECT host, pid, lease_until FROM daemons WHERE id=?", (daemon_id,)
                ).fetchone()
                live = row is not None and (_from_ts(row[2]) or now) > now
                if live and not may_replace(row[0], int(row[1])):
                    raise DaemonIdInUseError(daemon_id, row[0], int(row[1]))
            self._upsert_daemon(db, daemon_id, host, pid, lease, now)
            # A process gone with this id left these in flight: in doubt now, not in 30 s.
            db.execute(
                "UPDATE deliveries SET owner=NULL WHERE state=? AND owner=?",
                (DeliveryState.SENDING.value, daemon_id),
            )
        self.owner = daemon_id
        self._registration = (host, pid, lease)

    def _lock_daemon_id(self, db: Any, daemon_id: str) -> None:
        """Hold ``daemon_id`` until the transaction ends, row or no row (SQLite's BEGIN
        IMMEDIATE holds the whole database already)."""

    def _upsert_daemon(
        self, db: Any, daemon_id: str, host: str, pid: int, lease: dt.timedelta, now: dt.datetime
    ) -> None:
        db.execute(
            "INSERT INTO daemons (id, host, pid, started_at, heartbeat_at, lease_until, "
            "lease_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "host=excluded.host, pid=excluded.pid, started_at=excluded.started_at, "
            "heartbeat_at=excluded.heartbeat_at, lease_until=excluded.lease_until, "
            "lease_ms=excluded.lease_ms",
            (
                daemon_id,
                host,
                pid,
                _ts(now),
                _ts(now),
                _ts(now + lease),
                int(lease.total_seconds() * 1000),
            ),
        )

    def heartbeat(self, now: dt.datetime) -> bool:
        if self.owner is None:
            return True
        host, pid, lease = self._registration
        with self._write() as db:
            row = db.execute("SELECT lease_until FROM daemons WHERE id=?", (self.owner,)).fetchone()
            kept = row is not None and (_from_ts(row[0]) or now) > now
            if row is None:
                self._upsert_daemon(db, self.owner, host, pid, lease, now)
            else:
                db.execute(
                    "UPDATE daemons SET heartbeat_at=?, lease_until=? WHERE id=?",
                    (_ts(now), _ts(now + lease), self.owner),
                )
            # Daemons gone for a day are forgotten (their deliveries were taken over).
            db.execute(
                "DELETE FROM daemons WHERE lease_until<?", (_ts(now - dt.timedelta(days=1)),)
            )
        return kept

    def unregister(self, now: dt.datetime) -> None:
        if self.owner is None:
            return
        with self._write() as db:
            db.execute("DELETE FROM daemons WHERE id=?", (self.owner,))
        self.owner = None

    def reserve_account(
        self, account: str, gap: dt.timedelta, now: dt.datetime
    ) -> tuple[dt.datetime, str] | None:
        with self._write() as db:
            held = db.execute(
                "SELECT until, reason FROM account_holds WHERE account=? AND until>?",
                (account, _ts(now)),
            ).fetchone()
            if held is None and gap:
                # One statement: PostgreSQL locks the row a concurrent reservation holds, and
                # re-checks the condition once it is free, so one of them wins.
                won = db.execute(
                    "INSERT INTO account_holds (account, until, reason) VALUES (?, ?, ?) "
                    "ON CONFLICT (account) DO UPDATE SET until=excluded.until, "
                    "reason=excluded.reason WHERE account_holds.until<=? RETURNING until",
                    (account, _ts(now + gap), "min_gap", _ts(now)),
                ).fetchone()
                if won is None:
                    held = db.execute(
                        "SELECT until, reason FROM account_holds WHERE account=?", (account,)
                    ).fetchone()
        if held is None:
            return None
        until = _from_ts(held[0])
        assert until is not None
        return until, held[1]

    def hold_account(self, account: str, until: dt.datetime, reason: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO account_holds (account, until, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (account) DO UPDATE SET until=excluded.until, "
                "reason=excluded.reason WHERE account_holds.until<excluded.until",
                (account, _ts(until), reason),
            )

    def daemons(self, now: dt.datetime) -> list[DaemonInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT d.id, d.host, d.pid, d.started_at, d.heartbeat_at, d.lease_until, "
                "(SELECT COUNT(*) FROM deliveries WHERE state=? AND owner=d.id) "
                "FROM daemons d WHERE d.lease_until>? ORDER BY d.started_at, d.id",
                (DeliveryState.SENDING.value, _ts(now)),
            ).fetchall()
        out = []
        for r in rows:
            started, beat, until = _from_ts(r[3]), _from_ts(r[4]), _from_ts(r[5])
            assert started is not None and beat is not None and until is not None
            out.append(DaemonInfo(r[0], r[1], int(r[2]), started, beat, until, int(r[6])))
        return out

    def adopt_in_doubt(self, now: dt.datetime) -> list[Delivery]:
        if self.owner is None:
            return self.deliveries(states=[DeliveryState.SENDING])
        with self._write() as db:
            # One statement: under PostgreSQL's row locks, a second daemon adopting at the
            # same moment re-reads the owner it waited for, finds it alive, and skips it.
            rows = db.execute(
                f"UPDATE deliveries SET owner=? WHERE state=? AND (owner IS NULL OR owner "
                "NOT IN (SELECT id FROM daemons WHERE lease_until>?)) "
                f"RETURNING {_COLUMNS}",
                (self.owner, DeliveryState.SENDING.value, _ts(now)),
            ).fetchall()
            adopted = [_row(r) for r in rows]
        return sorted(adopted, key=lambda d: (d.due_at, d.key))

    def pause(
        self, account: str | None, until: dt.datetime | None, reason: str | None, now: dt.datetime
    ) -> Pause:
        with self._write() as db:
            db.execute(
                "INSERT INTO pauses (account, since, until, reason) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (account) DO UPDATE SET since=excluded.since, "
                "until=excluded.until, reason=excluded.reason",
                (account or "", _ts(now), _ts(until), reason),
            )
        return Pause(account, now, until, reason)

    def resume(self, account: str | None, now: dt.datetime) -> bool:
        with self._write() as db:
            cursor = db.execute("DELETE FROM pauses WHERE account=?", (account or "",))
            return cursor.rowcount == 1

    def pauses(self, now: dt.datetime) -> list[Pause]:
        with self._lock:
            rows = self._db.execute(
                "SELECT account, since, until, reason FROM pauses "
                "WHERE until IS NULL OR until > ? ORDER BY account",
                (_ts(now),),
            ).fetchall()
        out = []
        for account, since, until, reason in rows:
            started = _from_ts(since)
            assert started is not None
            out.append(Pause(account or None, started, _from_ts(until), reason))
        return out

    def raise_alert(self, alert: Alert, channels: Iterable[str], now: dt.datetime) -> bool:
        with self._write() as db:
            inserted = db.execute(
                "INSERT INTO alerts "
                "(dedupe, kind, subject, body, post_id, account, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING RETURNING id",
                (
                    alert.dedupe,
                    alert.kind,
                    alert.subject,
                    alert.body,
                    alert.post_id,
                    alert.account,
                    _ts(now),
                ),
            ).fetchone()
            if inserted is None:
                return False
            db.executemany(
                "INSERT INTO alert_sends (alert_id, channel, state, next_at) VALUES (?, ?, ?, ?)",
                [(inserted[0], c, AlertState.PENDING.value, _ts(now)) for c in channels],
            )
            return True

    def _alert_sends(self, where: str, args: tuple[Any, ...], tail: str) -> list[AlertSend]:
        sql = (
            "SELECT a.id, s.channel, a.kind, a.dedupe, a.subject, a.body, a.post_id, a.account, "
            "a.created_at, s.state, s.attempts, s.next_at, s.error, s.sent_at "
            f"FROM alert_sends s JOIN alerts a ON a.id = s.alert_id WHERE {where} {tail}"
        )
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        out = []
        for r in rows:
            created, next_at = _from_ts(r[8]), _from_ts(r[11])
            assert created is not None and next_at is not None
            alert = Alert(r[2], r[3], r[4], r[5], r[6], r[7])
            out.append(
                AlertSend(
                    r[0],
                    r[1],
                    alert,
                    created,
                    AlertState(r[9]),
                    r[10],
                    next_at,
                    r[12],
                    _from_ts(r[13]),
                )
            )
        return out

    def alerts_pending(self, channel: str) -> list[AlertSend]:
        return self._alert_sends(
            "s.channel=? AND s.state=?", (channel, AlertState.PENDING.value), "ORDER BY a.id"
        )

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
        ids = list(ids)
        if not ids:
            return
        with self._write() as db:
            if state is AlertState.SENT:
                db.executemany(
                    "UPDATE alert_sends SET state=?, sent_at=?, message=?, error=NULL, "
                    "attempts=attempts+1 WHERE alert_id=? AND channel=?",
                    [(state.value, _ts(now), min(ids), i, channel) for i in ids],
                )
            else:
                db.executemany(
                    "UPDATE alert_sends SET state=?, next_at=COALESCE(?, next_at), error=?, "
                    "attempts=attempts+1 WHERE alert_id=? AND channel=?",
                    [(state.value, _ts(next_at), error, i, channel) for i in ids],
                )

    def take_alert_turn(self, channel: str) -> bool:
        return True  # one daemon per SQLite ledger: always its turn

    def end_alert_turn(self, channel: str) -> None:
        pass

    def alert_messages_since(self, channel: str, since: dt.datetime) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(DISTINCT message) FROM alert_sends "
                "WHERE channel=? AND state=? AND sent_at>=?",
                (channel, AlertState.SENT.value, _ts(since)),
            ).fetchone()
        return int(row[0])

    def alert_sends(self, limit: int | None = 50) -> list[AlertSend]:
        if limit is None:
            return self._alert_sends("1=1", (), "ORDER BY a.id DESC, s.channel")
        return self._alert_sends("1=1", (limit,), "ORDER BY a.id DESC, s.channel LIMIT ?")

    def events_after(self, event_id: int, limit: int = 1000) -> list[tuple[int, Event]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, post_id, account, part, state, attempt, detail FROM events "
                "WHERE id>? ORDER BY id LIMIT ?",
                (event_id, limit),
            ).fetchall()
        return [(r["id"], _event_of(r)) for r in rows]

    def alert_cursor(self) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT event_id FROM alert_cursor WHERE name='events'"
            ).fetchone()
        return None if row is None else int(row[0])

    def set_alert_cursor(self, event_id: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO alert_cursor (name, event_id) VALUES ('events', ?) "
                "ON CONFLICT (name) DO UPDATE SET event_id=excluded.event_id",
                (event_id,),
            )

    def last_event_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(row[0])

    def note_edit_reported(self, key: DeliveryKey, content_hash: str, now: dt.datetime) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO edits_reported (post_id, account, part, content_hash, at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (key.post_id, key.account, key.part, content_hash, _ts(now)),
            )
            return cursor.rowcount == 1

    def get(self, key: DeliveryKey) -> Delivery | None:
        with self._lock:
            return self._select(self._db, key)

    def deliveries(
        self,
        *,
        post_id: str | None = None,
        account: str | None = None,
        states: Iterable[DeliveryState] | None = None,
        changed_since: dt.datetime | None = None,
        due_by: dt.datetime | None = None,
    ) -> list[Delivery]:
        where, args = [], []
        if changed_since is not None:
            where.append("updated_at>=?")
            args.append(_ts(changed_since))
        if due_by is not None:  # next_attempt_at, in SQL
            where.append(
                "(CASE WHEN state=? AND retry_at IS NOT NULL THEN retry_at ELSE due_at END)<=?"
            )
            args += [DeliveryState.RETRY.value, _ts(due_by)]
        if post_id is not None:
            where.append("post_id=?")
            args.append(post_id)
        if account is not None:
            where.append("account=?")
            args.append(account)
        if states is not None:
            values = [s.value for s in states]
            where.append(f"state IN ({','.join('?' * len(values))})")
            args.extend(values)
        sql = f"SELECT {_COLUMNS} FROM deliveries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY due_at, post_id, account, part"
        with self._lock:
            return [_row(r) for r in self._db.execute(sql, args)]

    def states_of(self, post_ids: Iterable[str]) -> dict[tuple[str, str], set[DeliveryState]]:
        out: dict[tuple[str, str], set[DeliveryState]] = {}
        wanted = list(dict.fromkeys(post_ids))
        with self._lock:
            for i in range(0, len(wanted), 500):  # well under any bound on parameters
                chunk = wanted[i : i + 500]
                rows = self._db.execute(
                    "SELECT post_id, account, state FROM deliveries "
                    f"WHERE post_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for post_id, account, state in rows:
                    out.setdefault((post_id, account), set()).add(DeliveryState(state))
        return out

    def events(self, *, post_id: str | None = None, account: str | None = None) -> list[Event]:
        where, args = [], []
        if post_id is not None:
            where.append("post_id=?")
            args.append(post_id)
        if account is not None:
            where.append("account=?")
            args.append(account)
        sql = "SELECT at, post_id, account, part, state, attempt, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_event_of(r) for r in rows]

    def counts(self) -> dict[DeliveryState, int]:
        counts = dict.fromkeys(DeliveryState, 0)
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM deliveries GROUP BY state"
            ).fetchall()
        for state, n in rows:
            counts[DeliveryState(state)] = n
        return counts

    def counts_by_account(self) -> dict[tuple[str, DeliveryState], int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT account, state, COUNT(*) FROM deliveries GROUP BY account, state"
            ).fetchall()
        return {(account, DeliveryState(state)): n for account, state, n in rows}

    def writable(self) -> str | None:
        if self.replaced():
            return f"the ledger {self.path} was removed or replaced"
        # Asked from the metrics thread: it must not wait behind a commit, or a slow disk
        # would hang the health check instead of failing it.
        if not self._lock.acquire(timeout=5):
            return "the ledger is busy for more than 5 s"
        try:
            if self._depth:
                return None  # a transaction is open right now: it takes writes
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
        except self.DRIVER_ERRORS as exc:
            return f"the ledger {self.path} takes no writes: {exc}"
        finally:
            self._lock.release()
        return self._disk_problem()

    def _disk_problem(self) -> str | None:
        """Why the ledger's disk will not take writes soon (nearly full), if it will not."""
        if self.path == ":memory:":
            return None
        try:
            free = os.statvfs(Path(self.path).parent)
        except OSError as exc:
            return f"the ledger's folder cannot be read: {exc.strerror}"
        if free.f_bavail * free.f_frsize < MIN_FREE_BYTES:
            return f"less than {MIN_FREE_BYTES // 1_000_000} MB free beside the ledger"
        return None

    @contextlib.contextmanager
    def acquire_daemon_lock(self) -> Iterator[None]:
        """An exclusive lock on ``<ledger>.lock``; the OS drops it if the process dies."""
        if self.path == ":memory:":
            yield
            return
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 100, 0).decode(errors="replace").strip()
                raise LedgerLockedError(
                    f"another postscheduler daemon is running on {self.path}"
                    + (f" (pid {holder})" if holder else "")
                    + ": stop it first, or give this one its own ledger"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # --- moving a ledger ------------------------------------------------------------------

    def table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A table's columns and every row, as stored (for ``ledger migrate``)."""
        if table not in COPIED_TABLES:
            raise LedgerError(f"no table {table} to copy")
        with self._lock:
            cursor = self._db.execute(f"SELECT * FROM {table} ORDER BY 1")
            rows = [tuple(r) for r in cursor.fetchall()]
            names = [d[0] for d in cursor.description] if cursor.description else []
        return names, rows

    def is_empty(self) -> bool:
        with self._lock:
            return not any(
                self._db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in COPIED_TABLES
            )

    def load_rows(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert rows as they were stored elsewhere, ids kept, in one transaction."""
        if table not in COPIED_TABLES:
            raise LedgerError(f"no table {table} to copy into")
        marks = ", ".join("?" * len(columns))
        with self._write() as db:
            db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            self._after_load(db, table)

    def _after_load(self, db: Any, table: str) -> None:
        """SQLite's AUTOINCREMENT follows the largest id by itself."""

    @staticmethod
    def _out_of_reach(exc: Exception) -> bool:
        """Whether a driver error means the database server is out of reach and may be
        back soon (a file on this machine never is)."""
        return False

    def close(self) -> None:
        self._db.close()
