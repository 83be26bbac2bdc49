"""Durable delivery state; see ``base`` for the contract."""

from __future__ import annotations

from pathlib import Path

from ..errors import LedgerError, LedgerLockedError
from .base import (
    CLAIMABLE_STATES,
    Alert,
    AlertSend,
    AlertState,
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


def open_ledger(location: str, base_dir: Path) -> Ledger:
    """Open the ledger named in the configuration: a SQLite file path (relative to the
    configuration's folder) or ``:memory:``."""
    if location.startswith(("postgresql://", "postgres://")):
        raise LedgerError(
            "a PostgreSQL ledger is not available yet: use a SQLite file path for `ledger:`"
        )
    from .sqlite import SqliteLedger

    path = location if location == ":memory:" else base_dir / location
    return SqliteLedger(path)
