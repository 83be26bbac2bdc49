"""What goes out next: the queue an organiser reads before the daemon publishes it."""

from __future__ import annotations

import dataclasses
import datetime as dt

from ..config import Settings
from ..errors import Finding
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
    return Agenda(tuple(entries), drafts, past)
