"""Keep secrets out of logs, the ledger and error messages.

Publishers build messages from platform responses, never from request headers; this is the
second line of defence: every secret value the configuration refers to, and anything that
looks like an Authorization header, is replaced before a line is written anywhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from .config import Settings

_AUTH = re.compile(r"(?i)(\bauthorization\s*[:=]\s*(?:bearer\s+|basic\s+)?|\bbearer\s+)([^\s'\"]+)")
MASK = "***"


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        values = []
        for account in settings.config.accounts.values():
            for ref in account.secrets().values():
                value = ref.resolve(settings.env)
                if value:
                    values.append(value)
        return cls(values)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return _AUTH.sub(lambda m: f"{m[1]}{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets in the whole line, tracebacks included."""

    def __init__(self, redactor: Redactor, fmt: str, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


def setup_logging(settings: Settings, *, verbose: bool = False) -> Redactor:
    """One line per event on stderr, secrets masked; returns the redactor for other outputs.

    The handler is the root logger's, so what the libraries log (APScheduler's tracebacks of a
    failed job, httpx, watchfiles, asyncio's "exception was never retrieved") is masked too.
    """
    redactor = Redactor.for_settings(settings)
    handler = logging.StreamHandler()
    handler.setFormatter(
        RedactingFormatter(
            redactor, "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logger = logging.getLogger("postscheduler")
    logger.handlers.clear()
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = True
    # httpx logs every request URL at INFO; some platforms put the token in the URL.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redactor
