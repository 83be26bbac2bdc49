"""What goes out next: the queue an organiser reads before the daemon publishes it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from ..config import Settings, unknown_account_finding
from ..errors import Finding, PostschedulerError
from .loader import Catalog
from .render import target_accounts


@dataclasses.dataclass(frozen=True, slots=True)
class AgendaEntry:
    when: dt.datetime  # in the configured zone
    post_id: str
    accounts: tuple[str, ...]
    first_line: str
    findings: tuple[Finding, ...]  # this post's findings; errors mean it will not go out

    @property
    def blocked(self) -> bool:
        return any(f.is_error for f in self.findings)


@dataclasses.dataclass(frozen=True, slots=True)
class Agenda:
    entries: tuple[AgendaEntry, ...]
    drafts: int
    past: int  # not drafts, time already gone by
    # Files with errors whose posts are not in the queue at all (unreadable, or no post).
    files_with_errors: frozenset[Path] = frozenset()

    @property
    def blocked(self) -> bool:
        """Whether something queued, or a whole file, will not go out as it stands."""
        return any(e.blocked for e in self.entries) or bool(self.files_with_errors)


def first_line(catalog: Catalog, post_id: str, width: int = 60) -> str:
    post = catalog.get(post_id).post
    text = (
        post.text
        or (post.quote.text if post.quote else None)
        or post.link
        or (post.image.alt if post.image else "")
    )
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def build_agenda(
    catalog: Catalog,
    settings: Settings,
    now: dt.datetime,
    *,
    days: float | None = None,
    account: str | None = None,
) -> Agenda:
    """Posts due from ``now`` (within ``late_grace`` behind it) for ``days``, soonest first."""
    zone = settings.config.zone
    start = now - settings.config.publishing.late_grace
    end = now + dt.timedelta(days=days) if days is not None else None
    entries = []
    drafts = past = 0
    for sp in catalog.posts:
        post = sp.post
        if post.is_draft:
            drafts += 1
            continue
        assert post.at is not None
        if post.at < start or (post.expires is not None and post.expires <= now):
            past += 1
            continue
        if end is not None and post.at > end:
            continue
        accounts = tuple(target_accounts(post, settings))
        if account is not None and account not in accounts:
            continue
        entries.append(
            AgendaEntry(
                post.at.astimezone(zone),
                post.id,
                accounts,
                first_line(catalog, post.id),
                tuple(f for f in catalog.findings if f.post_id == post.id),
            )
        )
    entries.sort(key=lambda e: (e.when, e.post_id))
    queued = {e.post_id for e in entries}
    bad_files = frozenset(
        f.file
        for f in catalog.findings
        if f.is_error and f.file is not None and f.post_id not in queued
    )
    return Agenda(tuple(entries), drafts, past, bad_files)


def queue_posts(
    settings: Settings,
    *,
    now: dt.datetime,
    days: float | None = None,
    account: str | None = None,
) -> Agenda:
    """The whole of ``postscheduler queue``: check the posts, then list what goes out next."""
    from .rules import validate

    if account is not None and account not in settings.config.accounts:
        raise PostschedulerError(unknown_account_finding(account, settings).as_text())
    return build_agenda(validate(settings, now=now), settings, now, days=days, account=account)
