"""A real SMTP server on 127.0.0.1 (aiosmtpd), keeping every message it is given."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import pytest

from . import free_port

aiosmtpd = pytest.importorskip(
    "aiosmtpd", reason="aiosmtpd is a test extra: pip install -e .[test]"
)
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []
        self.logins: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.raw.append(envelope.content)
            self.messages.append(message)
        return "250 OK"

    def bodies(self) -> list[str]:
        with self.lock:
            return [str(m.get_content()) for m in self.messages]


@contextmanager
def smtp_server(password: str | None = None) -> Iterator[Mailbox]:
    """``password``: require AUTH LOGIN/PLAIN as user ``alerts`` with it (over plain SMTP on
    loopback: the tests have no certificate)."""
    box = Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, given = data.login.decode(), data.password.decode()
        box.logins.append((user, given))
        return AuthResult(success=user == "alerts" and given == password)

    kwargs: dict[str, Any] = {}
    if password is not None:
        kwargs = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True}
    box.port = free_port()
    # AUTH over plain SMTP (loopback, no certificate): its warnings are ignored in pyproject.
    controller = Controller(box, hostname="127.0.0.1", port=box.port, **kwargs)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
