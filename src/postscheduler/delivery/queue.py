"""``queue``: what goes out next, as the posts say and as the ledger knows it.

The posts give the schedule; the ledger, when there is one, says what already went out (left
out), what failed or is unconfirmed (marked: a person must act) and what waits to retry, so
"what goes out next" is true after the daemon has run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ..config import Settings, unknown_account_finding
from ..errors import PostschedulerError
from ..ledger import DeliveryState, open_ledger
from ..posts.agenda import Agenda, build_agenda
from ..posts.render import target_accounts
from .checks import validate_posts

# The state that speaks for a post on one account, whichever of its parts has it.
_PRECEDENCE = (
    DeliveryState.UNCONFIRMED,
    DeliveryState.FAILED,
    DeliveryState.SENDING,
    DeliveryState.RETRY,
    DeliveryState.PLANNED,
)


def ledger_progress(
    settings: Settings, targets: Iterable[tuple[str, str]] = ()
) -> dict[tuple[str, str], str]:
    """(post, account) → where its delivery stands; empty when nothing was planned yet.
    ``targets`` the ledger does not know yet are "queued", or "paused" under a pause."""
    if not settings.ledger_exists():
        return {}
    now = dt.datetime.now(dt.UTC)
    labels = dict.fromkeys(targets, "queued")
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        by_target = ledger.states_of(post_id for post_id, _ in labels)
        pauses = ledger.pauses(now)
    labels.update({target: delivery_label(states) for target, states in by_target.items()})
    for (post_id, account), label in labels.items():
        # What a pause holds says so: it will not go out at its time unless resumed.
        if label in ("queued", "retry") and any(p.covers(account, now) for p in pauses):
            labels[post_id, account] = "paused"
    return labels


def delivery_label(states: set[DeliveryState]) -> str:
    state = next((s for s in _PRECEDENCE if s in states), None)
    if state is DeliveryState.PLANNED:
        return "queued"
    if state is not None:
        return state.value
    # Only settled parts left: all published, or some skipped (late, deleted, a new account).
    return "published" if states == {DeliveryState.PUBLISHED} else "skipped"


def queue_posts(
    settings: Settings,
    *,
    now: dt.datetime,
    days: float | None = None,
    account: str | None = None,
    show_all: bool = False,
) -> Agenda:
    """The whole of ``postscheduler queue``."""
    if account is not None and account not in settings.config.accounts:
        raise PostschedulerError(unknown_account_finding(account, settings).as_text())
    catalog = validate_posts(settings, now=now, against_ledger=False).catalog
    return build_agenda(
        catalog,
        settings,
        now,
        days=days,
        account=account,
        progress=ledger_progress(
            settings,
            ((sp.id, a) for sp in catalog.posts for a in target_accounts(sp.post, settings)),
        ),
        show_all=show_all,
    )
