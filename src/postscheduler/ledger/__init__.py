"""Durable delivery state; see ``base`` for the contract."""

from __future__ import annotations

from pathlib import Path

from ..errors import LedgerError, LedgerLockedError
from .base import (
    CLAIMABLE_STATES,
    Alert,
    AlertSend,
    AlertState,
    ClaimAttempt,
    DaemonInfo,
    Delivery,
    DeliveryKey,
    DeliveryState,
    Event,
    Ledger,
    Pause,
)

__all__ = [
    "CLAIMABLE_STATES",
    "Alert",
    "AlertSend",
    "AlertState",
    "ClaimAttempt",
    "DaemonInfo",
    "Delivery",
    "DeliveryKey",
    "DeliveryState",
    "Event",
    "Ledger",
    "LedgerError",
    "LedgerLockedError",
    "Pause",
    "open_ledger",
]


def _expand(url: str) -> str:
    """``${VAR}`` in a ledger URL (its password) from the environment, or a clear error."""
    import os
    import re

    def value(m: re.Match[str]) -> str:
        found = os.environ.get(m[1])
        if not found:
            raise LedgerError(f"the ledger URL refers to ${{{m[1]}}}, which is not set")
        from urllib.parse import quote

        return quote(found, safe="")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value, url)


def open_ledger(location: str, base_dir: Path) -> Ledger:
    """Open the ledger named in the configuration: a SQLite file path (relative to the
    configuration's folder) or ``:memory:``."""
    if location.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresLedger
        except ImportError:
            raise LedgerError(
                "a PostgreSQL ledger needs psycopg: pip install 'postscheduler[postgresql]'"
            ) from None
        return PostgresLedger(_expand(location))
    from .sqlite import SqliteLedger

    path = location if location == ":memory:" else base_dir / location
    return SqliteLedger(path)
