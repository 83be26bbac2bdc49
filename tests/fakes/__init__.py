"""Loopback stand-ins for what the tests talk to."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on just now (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
