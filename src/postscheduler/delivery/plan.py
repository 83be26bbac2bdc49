"""Planning: bringing the ledger in line with the posts.

Each valid post becomes one delivery per target account and thread part; a delivery's
content hash says what it publishes, so an edit before its time reschedules it and an edit
after it was published is reported, never resent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable

from ..config import Settings
from ..errors import Finding, warning
from ..ledger import CLAIMABLE_STATES, Delivery, DeliveryKey, DeliveryState, Ledger
from ..ledger.base import plan_changes
from ..posts.loader import Catalog, SourcedPost
from ..posts.render import RenderedPart, render_post, target_accounts

log = logging.getLogger("postscheduler")
NEW_ACCOUNT = "the account was added after the post's time"


def content_hash(part: RenderedPart) -> str:
    """What the part publishes: its text and its image (file, URL, alt and credit)."""
    h = hashlib.sha256(part.text.encode())
    if part.image is not None:
        for value in (part.image.file, part.image.url, part.image.alt, part.image.credit):
            h.update(b"\0" + (value or "").encode())
    return h.hexdigest()[:32]


@dataclasses.dataclass(frozen=True, slots=True)
class PlanResult:
    planned: int
    changed_after_publishing: list[DeliveryKey]
    # The posts this plan accounts for, for the next plan to start from (``plan``'s
    # ``before``): each valid post, and None for one held or to look at again.
    known: dict[str, SourcedPost | None] = dataclasses.field(default_factory=dict)
    # The posts whose deliveries this plan may have changed; None: any of them.
    touched: frozenset[str] | None = None


def valid_posts(catalog: Catalog) -> dict[str, SourcedPost]:
    return {sp.id: sp for sp in catalog.posts if sp.id not in catalog.blocked_ids}


def _not_ours(
    row: Delivery | None, settings: Settings, as_of: dt.datetime | None, now: dt.datetime
) -> bool:
    """On a ledger several daemons share, whether ``row`` is another daemon's to decide: an
    account this one does not send to, or a row planned since this checkout last fetched
    posts_repo (it may show a post added or edited since, not one this checkout lacks)."""
    if row is None or row.state not in CLAIMABLE_STATES:
        return False
    if row.key.account not in settings.config.accounts:
        return True
    return as_of is not None and (row.updated_at or now) >= as_of


def plan(
    catalog: Catalog,
    settings: Settings,
    ledger: Ledger,
    now: dt.datetime,
    as_of: dt.datetime | None = None,
    before: dict[str, SourcedPost | None] | None = None,
    recheck_since: dt.datetime | None = None,
) -> PlanResult:
    """Bring the ledger in line with the posts: plan new and edited deliveries, skip drafts,
    cancel deliveries of deleted posts. Posts with errors are held: their deliveries stay as
    they are until the file is fixed. On a shared ledger, see ``_not_ours``.

    ``before``: the ``known`` of the last plan, over this same configuration and ledger.
    Then only the posts that are new or changed since (a different ``SourcedPost``: the
    ``PostCache`` keeps those of unchanged files) and those gone are planned, rather than
    every post: with thousands of posts, a reload for one edit took a second.
    ``recheck_since``: the posts_repo fetch the last plan was made as of, on a shared ledger;
    the posts of rows planned since then are looked at again, since they may have become
    this daemon's to decide (``_not_ours``).
    """
    valid = valid_posts(catalog)
    held = catalog.blocked_ids
    again: set[str] = set()
    if before is None:
        todo = list(valid.values())
    else:
        if recheck_since is not None:
            again = {
                row.key.post_id
                for row in ledger.deliveries(states=CLAIMABLE_STATES, changed_since=recheck_since)
            }
        todo = [
            sp for post_id, sp in valid.items() if before.get(post_id) is not sp or post_id in again
        ]
    planned = 0
    changed: list[tuple[DeliveryKey, str]] = []
    live: set[DeliveryKey] = set()
    # Planning everything: every row read in one query, and only those that change planned
    # (one statement or two per delivery took a second for 10,000 posts at each start-up).
    rows = None if before is not None else {row.key: row for row in ledger.deliveries()}
    seen = _Seen(ledger, rows)
    for sp in todo:
        planned += _plan_post(sp, settings, seen, now, as_of, live, changed)

    def gone_ones(claimable: Iterable[Delivery]) -> list[Delivery]:
        return [
            row
            for row in claimable
            if row.key not in live
            and row.key.post_id not in held
            and not (ledger.shared and _not_ours(row, settings, as_of, now))
        ]

    if before is None:
        assert rows is not None
        gone = gone_ones(row for row in rows.values() if row.state in CLAIMABLE_STATES)
    else:
        # Edited posts may have lost accounts or thread parts; deleted ones lost them all.
        looked_at = {sp.id for sp in todo}
        looked_at.update(post_id for post_id in before if post_id not in valid)
        looked_at.update(post_id for post_id in again if post_id not in valid)
        gone = [
            row
            for post_id in sorted(looked_at)
            for row in gone_ones(ledger.deliveries(post_id=post_id, states=CLAIMABLE_STATES))
        ]
    known: dict[str, SourcedPost | None] = dict.fromkeys(held)
    known.update(valid)
    if gone and catalog.unreadable:
        # A file that cannot be read is not a deletion: its posts come back when it is fixed.
        log.warning(
            "%d deliveries of posts not found are held, not cancelled, while %s cannot be read",
            len(gone),
            ", ".join(str(p) for p in catalog.unreadable),
        )
        for row in gone:
            known[row.key.post_id] = None  # to be looked at again next time
        gone = []
    for row in gone:
        ledger.record_skipped(row.key, "deleted", now)
        log.info("cancelled %s: the post or account is gone", row.key)
    for key, new_hash in changed:
        # Once per edit: a daemon reloads on every change and cron runs run --once each
        # minute; the same warning each time would bury the rest (validate always says it).
        if ledger.note_edit_reported(key, new_hash, now):
            log.warning("%s was edited after it was published; it will not be sent again", key)
    touched = (
        None
        if before is None
        else frozenset(sp.id for sp in todo) | {row.key.post_id for row in gone}
    )
    return PlanResult(planned, [key for key, _ in changed], known, touched)


class _Seen:
    """The rows a plan goes by: read at once beforehand (``rows``), or one by one."""

    def __init__(self, ledger: Ledger, rows: dict[DeliveryKey, Delivery] | None) -> None:
        self.ledger = ledger
        self.rows = rows
        self.posts = None if rows is None else {key.post_id for key in rows}

    def get(self, key: DeliveryKey) -> Delivery | None:
        return self.ledger.get(key) if self.rows is None else self.rows.get(key)

    def has_post(self, post_id: str) -> bool:
        if self.posts is None:
            return bool(self.ledger.deliveries(post_id=post_id))
        return post_id in self.posts


def _plan_post(
    sp: SourcedPost,
    settings: Settings,
    seen: _Seen,
    now: dt.datetime,
    as_of: dt.datetime | None,
    live: set[DeliveryKey],
    changed: list[tuple[DeliveryKey, str]],
) -> int:
    """Plan one valid post's deliveries, adding their keys to ``live`` and those published
    with other words to ``changed``; the number newly planned."""
    ledger = seen.ledger
    planned = 0
    post = sp.post
    known: bool | None = None  # whether the ledger had this post before this plan
    for account in target_accounts(post, settings):
        rendering = render_post(post, account, settings)
        for part in rendering.parts:
            key = DeliveryKey(post.id, account, part.index)
            live.add(key)
            current = seen.get(key)
            if post.at is not None and post.at <= now and not post.is_draft and current is None:
                if known is None:  # asked at the post's first new key, before any is planned
                    known = seen.has_post(post.id)
                if known:
                    # An account added to a post (or to defaults.accounts) after the
                    # post's time: it was not due to go there. A person may still send
                    # it: `publish POST --now --account ACCOUNT`.
                    ledger.plan(key, post.at, content_hash(part), now)
                    ledger.record_skipped(key, NEW_ACCOUNT, now)
                    log.info("%s not sent: %s", key, NEW_ACCOUNT)
                    continue
            if post.is_draft:
                row = current or ledger.plan(key, post.at or now, "draft", now)
                if row.state in CLAIMABLE_STATES:
                    ledger.record_skipped(key, "draft", now)
                continue
            assert post.at is not None  # only drafts may go without a time
            # Due inside a blackout that holds: its time is the window's end.
            when = settings.config.release_time(post.at, account)
            digest = content_hash(part)
            if current is not None and not plan_changes(current, when, digest):
                row = current
            else:
                if ledger.shared:
                    # Read afresh: another daemon may have planned it since.
                    known_row = ledger.get(key)
                    if (
                        known_row is not None
                        and known_row.content_hash != digest
                        and _not_ours(known_row, settings, as_of, now)
                    ):
                        continue  # a newer version, from a checkout ahead of this one
                row = ledger.plan(key, when, digest, now)
            if row.state is DeliveryState.PUBLISHED and row.content_hash != digest:
                changed.append((key, digest))
            elif row.state is DeliveryState.PLANNED:
                planned += 1
    return planned


def edits_after_publishing(catalog: Catalog, settings: Settings, ledger: Ledger) -> list[Finding]:
    """A warning for each part whose words or image changed after it was published: the
    change will not go out (the ledger never sends a delivery twice)."""
    findings = []
    for sp in valid_posts(catalog).values():
        for account in target_accounts(sp.post, settings):
            if account not in settings.config.accounts:
                continue
            for part in render_post(sp.post, account, settings).parts:
                row = ledger.get(DeliveryKey(sp.id, account, part.index))
                if (
                    row is not None
                    and row.state is DeliveryState.PUBLISHED
                    and row.content_hash != content_hash(part)
                ):
                    what = "the post" if part.index == 0 else f"thread part {part.index + 1}"
                    findings.append(
                        warning(
                            "published-changed",
                            f"{what} was changed after it was published to {account}; "
                            "the change will not be published",
                            hint="publish the correction as a new post",
                            **sp.where("text" if part.index == 0 else "thread", account=account),
                        )
                    )
    return findings
