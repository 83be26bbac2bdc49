"""Findings and exceptions.

A *finding* is something wrong (or worth a look) in the user's files: it carries the file,
line and column, the post id and account it concerns, what is wrong and what to do. Findings
are collected, never raised, so one bad file never hides the problems of another.

Exceptions are for the cases where one step cannot go on. Every exception postscheduler
raises is in this one tree, so the CLI turns any of them into a clean message::

    PostschedulerError          base of everything the CLI turns into a clean message
     ├── ConfigError            scheduler.yaml is missing or invalid (carries its findings)
     ├── PostNotFoundError      no post has the id the user asked for (also a KeyError)
     ├── YamlSourceError        a file cannot be read as YAML at all (carries its finding)
     ├── TimeError              a time or zone cannot be read, or names no single instant
     │                          (also a ValueError, so model validators report it in place)
     ├── ImageError             an image cannot be used: missing, outside posts/, unreadable
     │                          (also a ValueError)
     ├── CardError              a link card could not be built (the post goes out without)
     ├── FetchError             an address a post names could not be fetched within the fences
     ├── LedgerError            the ledger cannot be opened or is inconsistent
     │    └── LedgerLockedError another daemon holds this ledger
     └── PublishError           a publish did not succeed; ``message`` is shown to people and
          │                     kept in the ledger, so it never holds a secret
          ├── TransientError    nothing was published; retry later (``retry_after`` seconds)
          ├── PermanentError    nothing was published; retrying will not help
          └── OutcomeUnknownError  it may have been published; only an idempotent resend
                                is safe
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in the user's files.

    ``code`` is a stable, machine-readable name (``unknown-key``, ``text-too-long``...) for
    scripts and tests; ``message`` says what is wrong in plain words and ``hint`` what to do.
    ``line`` and ``column`` are 1-based; 0 means "the whole file".
    """

    severity: Severity
    code: str
    message: str
    file: Path | None = None
    line: int = 0
    column: int = 0
    post_id: str | None = None
    account: str | None = None
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def location(self) -> str:
        if self.file is None:
            return "<config>"
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return str(self.file)

    def as_text(self) -> str:
        who = ""
        if self.post_id and self.account:
            who = f"[{self.post_id} → {self.account}] "
        elif self.post_id:
            who = f"[{self.post_id}] "
        elif self.account:
            who = f"[account {self.account}] "
        text = f"{self.location()}: {self.severity.value}: {who}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["severity"] = self.severity.value
        data["file"] = str(self.file) if self.file is not None else None
        return data


def error(code: str, message: str, **where: Any) -> Finding:
    return Finding(Severity.ERROR, code, message, **where)


def warning(code: str, message: str, **where: Any) -> Finding:
    return Finding(Severity.WARNING, code, message, **where)


class PostschedulerError(Exception):
    """Base class of the errors a command reports to the user and stops on."""


class ConfigError(PostschedulerError):
    """The configuration cannot be used; ``findings`` says why, with positions."""

    def __init__(self, message: str, findings: Iterable[Finding] = ()) -> None:
        self.findings = tuple(findings)
        super().__init__(message)

    def __str__(self) -> str:
        lines = [self.args[0]]
        lines.extend(f"  {f.as_text()}" for f in self.findings)
        return "\n".join(lines)


class PostNotFoundError(PostschedulerError, KeyError):
    """No loaded post has this id."""

    def __init__(self, post_id: str, known: Iterable[str] = ()) -> None:
        import difflib

        self.post_id = post_id
        close = difflib.get_close_matches(post_id, list(known), n=3)
        message = f"no post with id {post_id!r}"
        if close:
            message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class YamlSourceError(PostschedulerError):
    """A file cannot be read as YAML; ``finding`` says where and why."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(finding.message)


class TimeError(PostschedulerError, ValueError):
    """A time that cannot be read, or that names no single instant."""


class ImageError(PostschedulerError, ValueError):
    """The image cannot be used; the message says why and what to do."""


class CardError(PostschedulerError):
    """The card could not be built; the message says why (the post goes out without it)."""


class FetchError(PostschedulerError):
    """An address a post names (an image, an article) could not be fetched within the fences;
    ``transient`` when trying later may work (a timeout, a 5xx)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


class LedgerError(PostschedulerError):
    """The ledger cannot be used."""


class LedgerLockedError(LedgerError):
    """Another daemon is running on this ledger."""


class DaemonIdInUseError(LedgerError):
    """A live daemon elsewhere is registered with this daemon's id (its state folder was
    copied): registering as it would put that daemon's deliveries in flight in doubt."""

    def __init__(self, daemon_id: str, host: str, pid: int) -> None:
        super().__init__(f"daemon id {daemon_id} is in use by pid {pid} on {host}")
        self.daemon_id, self.host, self.pid = daemon_id, host, pid


class LeaseLostError(LedgerError):
    """This daemon's lease on the ledger ran out (it lost the database for longer than the
    lease): it claims nothing until the lease is renewed."""


class LedgerUnreachableError(LedgerError):
    """The ledger's database server cannot be reached (down, restarting, the network): it
    may be back soon, unlike a ledger that is wrong."""


class PublishError(PostschedulerError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class TransientError(PublishError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(PublishError):
    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status  # the platform's HTTP status, where it answered with one
        super().__init__(message)


class OutcomeUnknownError(PublishError):
    pass
