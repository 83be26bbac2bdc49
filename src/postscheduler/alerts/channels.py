"""Where alerts go: e-mail over SMTP, or a chat/webhook account the campaign already has.

A channel sends one message or raises ``ChannelError``; the alerter retries. Nothing here
may block the event loop: SMTP runs on a worker thread, chat messages use the account's own
publisher with a short timeout.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import email.utils
import smtplib
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from ..config import Smtp
from ..errors import PublishError
from ..ledger import DeliveryKey
from ..publishers.base import PublishJob

if TYPE_CHECKING:
    from ..publishers import Publisher

CHAT_LIMIT = 1900  # characters: under Discord's 2,000, the smallest of the chat platforms
SUBJECT_PREFIX = "[postscheduler] "


class ChannelError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Channel(abc.ABC):
    name: str

    @abc.abstractmethod
    async def send(self, subject: str, body: str) -> None: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass


class SmtpChannel(Channel):
    name = "smtp"

    def __init__(
        self, smtp: Smtp, env: Mapping[str, str], campaign: str, redact: Callable[[str], str]
    ) -> None:
        self.smtp = smtp
        self.env = env
        self.campaign = campaign  # the configuration's folder name, in the From line
        self.redact = redact

    def message(self, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = SUBJECT_PREFIX + subject
        msg["From"] = self.smtp.sender
        msg["To"] = ", ".join(self.smtp.to)
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(domain="postscheduler.invalid")
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
        msg.set_content(body + f"\n\n-- \npostscheduler, for {self.campaign}\n")
        return msg

    def _send(self, msg: EmailMessage) -> None:
        cfg = self.smtp
        timeout = cfg.timeout.total_seconds()
        context = ssl.create_default_context()
        server: smtplib.SMTP
        if cfg.ssl:
            server = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=timeout, context=context)
        else:
            server = smtplib.SMTP(cfg.host, cfg.port, timeout=timeout)
        with server:
            if cfg.starttls:
                server.starttls(context=context)
            if cfg.username:
                password = cfg.password.resolve(self.env) if cfg.password else None
                if not password:
                    ref = cfg.password.name if cfg.password else "a password"
                    raise ChannelError(f"alerts.smtp.password: ${{{ref}}} is not set")
                server.login(cfg.username, password)
            server.send_message(msg)

    async def send(self, subject: str, body: str) -> None:
        msg = self.message(subject, body)
        try:
            await _on_daemon_thread(self._send, msg)
        except ChannelError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            # smtplib's words may quote the server, never our password; masked all the same.
            raise ChannelError(self.redact(f"e-mail via {self.smtp.host}: {exc}")) from None


def _on_daemon_thread(fn: Callable[[EmailMessage], None], msg: EmailMessage) -> Any:
    """Run ``fn`` on a thread of its own that does not hold the process up: a mail server
    that never answers must not keep a stopping daemon waiting for its socket timeout (the
    default executor's threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def run() -> None:
        try:
            fn(msg)
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            outcome: BaseException | None = exc
        else:
            outcome = None
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="smtp", daemon=True).start()
    return future


class ChatChannel(Channel):
    """An alert account: the message goes out through its publisher, as a post would."""

    def __init__(self, account: str, publisher: Publisher, clock: Callable[[], dt.datetime]):
        self.name = account
        self.publisher = publisher
        self.clock = clock

    def text(self, subject: str, body: str) -> str:
        text = f"⚠ {subject}\n\n{body}"
        if len(text) > CHAT_LIMIT:
            text = text[: CHAT_LIMIT - 60].rstrip() + "\n… (cut: `postscheduler alerts list`)"
        return text

    async def send(self, subject: str, body: str) -> None:
        now = self.clock()
        job = PublishJob(
            key=DeliveryKey("postscheduler-alert", self.name),
            identity=f"postscheduler-alert-{uuid.uuid4().hex}",
            text=self.text(subject, body),
            image=None,
            image_path=None,
            link=None,
            language=None,
            content_warning=None,
            reply_to=None,
            root=None,
            parts=1,
            due_at=now,
            attempt=0,
            sent_at=now,
            kind="alert",
        )
        try:
            await self.publisher.publish(job)
        except PublishError as exc:
            # An answer lost on the way counts as not sent: an alert twice beats none.
            raise ChannelError(f"{self.name}: {exc.message}") from None

    async def aclose(self) -> None:
        await self.publisher.aclose()
