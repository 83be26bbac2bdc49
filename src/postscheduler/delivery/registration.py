"""A process's registration on the ledger: its daemon id, kept across restarts, and the
lease that tells other daemons sharing the ledger it is alive."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterator

from ..config import Settings
from ..errors import LedgerError
from ..ledger import Ledger

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _daemon_id(settings: Settings) -> Iterator[str]:
    """This checkout's daemon id, kept in its state folder so that a daemon restarted after
    a crash has the same one, and what it left in flight is in doubt at once (not when its
    old lease runs out). The file is locked while in use: a second process on the same
    checkout (a ``run --once`` beside the daemon) gets an id of its own."""
    host = socket.gethostname()
    fresh = f"{host}-{secrets.token_hex(4)}"
    if settings.config.ledger == ":memory:":
        yield fresh
        return
    path = settings.state_dir / "daemon.id"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield fresh
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield fresh
            return
        known = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if not known:
            os.pwrite(fd, fresh.encode(), 0)
        yield known or fresh
    finally:
        os.close(fd)


@contextlib.contextmanager
def registered(
    settings: Settings, ledger: Ledger, clock: Callable[[], dt.datetime]
) -> Iterator[str]:
    """Hold the ledger for this process: the one-daemon lock (SQLite), and a registration
    with a lease (every ledger: on a shared one, it is what keeps others off this daemon's
    deliveries in flight). Yields the daemon's id."""
    with ledger.acquire_daemon_lock(), _daemon_id(settings) as ident:
        lease = settings.config.publishing.lease
        ledger.register(ident, socket.gethostname(), os.getpid(), lease, clock())
        try:
            yield ident
        finally:
            try:
                ledger.unregister(clock())
            except LedgerError as exc:  # the database gone: the lease runs out by itself
                log.warning("could not unregister from the ledger: %s", exc)
