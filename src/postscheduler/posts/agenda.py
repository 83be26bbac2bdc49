"""What goes out next: the queue an organiser reads before the daemon publishes it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from ..config import Settings
from ..errors import Finding
from .loader import Catalog
from .render import target_accounts

# A delivery in one of these will not go out again by itself.
FINISHED = frozenset({"published", "skipped"})


@dataclasses.dataclass(frozen=True, slots=True)
class AgendaEntry:
    when: dt.datetime  # in the configured zone
    post_id: str
    accounts: tuple[str, ...]
    first_line: str
    findings: tuple[Finding, ...]  # this post's findings; errors mean it will not go out
    # Where each account's delivery stands, from the ledger: queued, sending, retry, failed,
    # unconfirmed (published and skipped ones are left out of the queue unless asked for).
    states: tuple[tuple[str, str], ...] = ()
    late_after: dt.datetime | None = None  # a held post is skipped as late after this

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
    done: int = 0  # posts left out because every account has them published or skipped

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
    progress: Mapping[tuple[str, str], str] | None = None,
    show_all: bool = False,
) -> Agenda:
    """Posts due from ``now`` (within ``late_grace`` behind it) for ``days``, soonest first.

    ``progress`` says where each (post, account) stands in the ledger; posts every account
    has published or skipped are left out unless ``show_all``.
    """
    zone = settings.config.zone
    start = now - settings.config.publishing.late_grace
    end = now + dt.timedelta(days=days) if days is not None else None
    entries = []
    drafts = past = done = 0
    progress = progress or {}
    for sp in catalog.posts:
        post = sp.post
        if post.is_draft:
            drafts += 1
            continue
        assert post.at is not None
        if not show_all and (post.at < start or (post.expires is not None and post.expires <= now)):
            past += 1
            continue
        if end is not None and post.at > end:
            continue
        accounts = tuple(target_accounts(post, settings))
        if account is not None and account not in accounts:
            continue
        states = tuple((a, progress.get((post.id, a), "queued")) for a in accounts)
        if not show_all and states and all(state in FINISHED for _, state in states):
            done += 1
            continue
        findings = tuple(f for f in catalog.findings if f.post_id == post.id)
        late_after = None
        if any(f.is_error for f in findings):
            late_after = (post.at + settings.config.publishing.late_grace).astimezone(zone)
        entries.append(
            AgendaEntry(
                post.at.astimezone(zone),
                post.id,
                accounts,
                first_line(catalog, post.id),
                findings,
                states,
                late_after,
            )
        )
    entries.sort(key=lambda e: (e.when, e.post_id))
    queued = {e.post_id for e in entries}
    bad_files = frozenset(
        f.file
        for f in catalog.findings
        if f.is_error and f.file is not None and f.post_id not in queued
    )
    return Agenda(tuple(entries), drafts, past, bad_files, done)
