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
from ..errors import DaemonIdInUseError, LedgerError
from ..ledger import Ledger

log = logging.getLogger(__name__)


class _DaemonId:
    """This checkout's daemon id and, while the file is held, a way to replace it."""

    def __init__(self, value: str, fd: int | None) -> None:
        self.value, self._fd = value, fd

    def replace(self) -> str:
        self.value = _fresh_id()
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, self.value.encode(), 0)
        return self.value


def _fresh_id() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def _daemon_id(settings: Settings) -> Iterator[_DaemonId]:
    """This checkout's daemon id, kept in its state folder so that a daemon restarted after
    a crash has the same one, and what it left in flight is in doubt at once (not when its
    old lease runs out). The file is locked while in use: a second process on the same
    checkout (a ``run --once`` beside the daemon) gets an id of its own."""
    if settings.config.ledger == ":memory:":
        yield _DaemonId(_fresh_id(), None)
        return
    path = settings.state_dir / "daemon.id"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield _DaemonId(_fresh_id(), None)
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield _DaemonId(_fresh_id(), None)
            return
        known = os.pread(fd, 200, 0).decode(errors="replace").strip()
        ident = _DaemonId(known, fd)
        if not known:
            ident.replace()
        yield ident
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process (EPERM): alive
    return True


def _earlier_self(host: str, pid: int) -> Callable[[str, int], bool]:
    """Whether a live registration of this daemon's id is this daemon's own earlier process:
    on this host, and either this process or one no longer running (killed, crashed). Any
    other holder is a copy of the state folder, running (or only just stopped) elsewhere."""

    def check(their_host: str, their_pid: int) -> bool:
        return their_host == host and (their_pid == pid or not _pid_alive(their_pid))

    return check


@contextlib.contextmanager
def registered(
    settings: Settings, ledger: Ledger, clock: Callable[[], dt.datetime]
) -> Iterator[str]:
    """Hold the ledger for this process: the one-daemon lock (SQLite), and a registration
    with a lease (every ledger: on a shared one, it is what keeps others off this daemon's
    deliveries in flight). Yields the daemon's id."""
    with ledger.acquire_daemon_lock(), _daemon_id(settings) as daemon_id:
        lease = settings.config.publishing.lease
        host, pid = socket.gethostname(), os.getpid()
        try:
            ledger.register(daemon_id.value, host, pid, lease, clock(), _earlier_self(host, pid))
        except DaemonIdInUseError as exc:
            # Registering as the other would put its deliveries in flight in doubt, and
            # another daemon would resolve them while it still sends them: sent twice.
            old = daemon_id.value
            ledger.register(daemon_id.replace(), host, pid, lease, clock())
            log.warning(
                "daemon id %s is held by pid %d on %s, whose lease is live: this checkout's "
                "state folder (%s) was copied from that one's. This daemon is %s from now on.",
                old,
                exc.pid,
                exc.host,
                settings.state_dir,
                daemon_id.value,
            )
        ident = daemon_id.value
        try:
            yield ident
        finally:
            try:
                ledger.unregister(clock())
            except LedgerError as exc:  # the database gone: the lease runs out by itself
                log.warning("could not unregister from the ledger: %s", exc)
