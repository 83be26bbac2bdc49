"""Keep secrets out of logs, the ledger and error messages.

Publishers build messages from platform responses, never from request headers; this is the
second line of defence: every secret the process holds is replaced before a line is written
anywhere (logs, the ledger, ``status`` and ``history``): each value the configuration refers
to, in the forms it travels in (URL-encoded; a webhook URL's path, which error pages echo;
what a platform derives from it, such as X's Basic credentials), the tokens publishers keep
beside the ledger, the tokens handed out while running (``learn_secret``), and anything that
looks like an Authorization header.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from .config import Settings

_AUTH = re.compile(r"(?i)(\bauthorization\s*[:=]\s*(?:bearer\s+|basic\s+)?|\bbearer\s+)([^\s'\"]+)")
MASK = "***"
# Files beside the ledger in which publishers keep tokens they were given (Bluesky's
# session, X's rotated refresh token): their values are secrets too.
KEPT_SECRET_SUFFIXES = (".session", ".refresh-token")
MIN_SECRET = 8  # shorter strings are not masked: they would mask ordinary words
# Tokens this process learned while running (a refreshed session, a rotated refresh token):
# every redactor masks them from then on.
# (Insertion-ordered and bounded: a session renewed every two hours for months stays small;
# the oldest tokens have long expired.)
_learned: dict[str, None] = {}
MAX_LEARNED = 1000


def learn_secret(value: str | None) -> None:
    """Mask ``value`` everywhere from now on: for tokens a platform hands out at run time."""
    if value and len(value) >= MIN_SECRET:
        _learned[value] = None
        while len(_learned) > MAX_LEARNED:
            del _learned[next(iter(_learned))]


def _forms(value: str) -> set[str]:
    """A secret and the forms it travels in: URL-encoded, and for a URL (a webhook whose
    address is the credential) its path and long path segments, which error pages echo."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    parts = urllib.parse.urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        if len(parts.path) >= MIN_SECRET:
            forms.add(parts.path)
        forms.update(seg for seg in parts.path.split("/") if len(seg) >= 16)
        if parts.query:
            forms.add(parts.query)
    return forms


def _kept_secrets(folder: Path) -> set[str]:
    found: set[str] = set()
    try:
        files = [f for f in folder.iterdir() if f.name.endswith(KEPT_SECRET_SUFFIXES)]
    except OSError:
        return found
    for file in files:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError):
            continue
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        values = data.values() if isinstance(data, dict) else [data]
        found.update(v for v in values if isinstance(v, str) and len(v) >= 16)
    return found


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                forms |= {f for f in _forms(secret) if len(f) >= 4}
        self._secrets = forms

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        from .platforms import PLATFORMS

        values = [v for _, _, ref in settings.secret_refs() if (v := ref.resolve(settings.env))]
        for account in settings.config.accounts.values():
            spec = PLATFORMS.get(account.platform)
            if spec is not None:
                values.extend(spec.secret_forms(account, settings.env))
        values.extend(_kept_secrets(settings.state_dir))
        return cls(values)

    def widen(self, other: Redactor) -> None:
        """Mask ``other``'s secrets too, from now on, wherever this redactor is used."""
        self._secrets = self._secrets | other._secrets  # a new set: readers need no lock

    def __call__(self, text: str) -> str:
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(self._secrets.union(_learned), key=len, reverse=True):
            text = text.replace(secret, MASK)
        return _AUTH.sub(lambda m: f"{m[1]}{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets in the whole line, tracebacks included."""

    def __init__(self, redactor: Redactor, fmt: str, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers: time, level, logger, message (and the
    traceback, the post and the account where a line names them). Each text is masked
    before it is encoded, so a secret cannot slip through in its JSON-escaped form."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redactor(record.getMessage()),
        }
        if record.exc_info:
            entry["traceback"] = self.redactor(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(
    settings: Settings, *, verbose: bool = False, log_format: str = "text"
) -> Redactor:
    """One line per event on stderr, secrets masked; returns the redactor for other outputs.

    The handler is the root logger's, so what the libraries log (APScheduler's tracebacks of a
    failed job, httpx, watchfiles, asyncio's "exception was never retrieved") is masked too.
    """
    redactor = Redactor.for_settings(settings)
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(redactor))
    else:
        handler.setFormatter(
            RedactingFormatter(
                redactor,
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                "%Y-%m-%dT%H:%M:%S%z",
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
