"""What an alert says: built from the ledger's history and the daemon's own events.

Every alert names the post, the account, the file and line, links to what was published, and
says what to do, with the exact command. Its ``dedupe`` names the event it reports, so seeing
the event again (a reload, a restart) raises nothing new.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence

from ..ledger import Alert, AlertSend, Delivery, DeliveryKey, DeliveryState, Event

# Skips a person is told about: the others (a draft, a deleted file) were a person's doing.
ALERTED_SKIPS = ("late", "expired")
SUMMARY_LINES = 25  # alerts listed by name in a summary; the rest are counted


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """What the alert texts need to know beyond the history line."""

    zone: dt.tzinfo
    late_grace: dt.timedelta
    where: Callable[[str], str | None]  # a post id → "posts/x.yaml:3", when it is known
    row: Callable[[DeliveryKey], Delivery | None]
    published: Callable[[str, str], list[str]]  # (post, account) → URLs of its parts out

    def local(self, when: dt.datetime) -> str:
        return when.astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z")


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _about(ctx: Context, key: DeliveryKey) -> list[str]:
    lines = [f"Post: {key.post_id}" + (f" (part {key.part + 1})" if key.part else "")]
    where = ctx.where(key.post_id)
    if where:
        lines.append(f"File: {where}")
    lines.append(f"Account: {key.account}")
    row = ctx.row(key)
    if row is not None:
        lines.append(f"Due: {ctx.local(row.scheduled_at)}")
    for url in ctx.published(key.post_id, key.account):
        lines.append(f"Published so far: {url}")
    return lines


def delivery_alerts(events: Iterable[tuple[int, Event]], ctx: Context) -> list[Alert]:
    """One alert per delivery event a person must hear of: failed, unconfirmed, skipped as
    late or expired. A thread's parts skipped together are one alert."""
    seen: dict[tuple[str, str, DeliveryState, str], tuple[int, Event]] = {}
    for event_id, event in events:
        detail = event.detail or ""
        if event.state is DeliveryState.SKIPPED and not detail.startswith(ALERTED_SKIPS):
            continue
        if event.state not in (
            DeliveryState.FAILED,
            DeliveryState.UNCONFIRMED,
            DeliveryState.SKIPPED,
        ):
            continue
        group = (event.key.post_id, event.key.account, event.state, detail)
        seen.setdefault(group, (event_id, event))
    return [_delivery_alert(event_id, event, ctx) for event_id, event in seen.values()]


def _delivery_alert(event_id: int, event: Event, ctx: Context) -> Alert:
    key, detail = event.key, event.detail or ""
    post, account = key.post_id, key.account
    if event.state is DeliveryState.FAILED:
        subject = f"FAILED: {key}"
        lines = [
            f"The post {post} was not published to {account}.",
            f"Why: {detail}",
            "",
            *_about(ctx, key),
            "",
            "What to do: fix what the reason says (the post, or the account's credentials), "
            f"then send it again with `postscheduler retry {post}`.",
        ]
    elif event.state is DeliveryState.UNCONFIRMED:
        subject = f"UNCONFIRMED: {key}: check the account"
        lines = [
            f"The post {post} may or may not have been published to {account}: the "
            "platform did not say, and sending it again could post it twice.",
            f"Why: {detail}",
            "",
            *_about(ctx, key),
            "",
            f"What to do: look at {account} by hand, then record what you found:",
            f"  postscheduler resolve {post} --account {account} --sent     (it is there)",
            f"  postscheduler resolve {post} --account {account} --resend   (it is not)",
        ]
    else:
        why = (
            "its expiry time had passed"
            if detail.startswith("expired")
            else f"it was due more than late_grace ({ctx.late_grace}) before it could be sent"
        )
        subject = f"SKIPPED ({detail}): {key}"
        lines = [
            f"The post {post} was not sent to {account}: {why} ({detail}, at "
            f"{ctx.local(event.at)}).",
            "",
            *_about(ctx, key),
            "",
            "What to do: nothing, if it is no longer news. To send it anyway: "
            f"`postscheduler publish {post} --now --account {account}`.",
        ]
    return Alert(
        event.state.value,
        f"delivery:{event_id}",
        subject,
        "\n".join(lines),
        post_id=post,
        account=account,
    )


_DAYS_LEFT = re.compile(r"\s*\(in \d+ days?\)")


def credential_alert(account: str, warning: str) -> Alert:
    """A token that expires soon, a secret that is missing, credentials refused: once per
    account and problem (the countdown of days does not make it a new one)."""
    steady = _DAYS_LEFT.sub("", warning)
    return Alert(
        "credentials",
        f"credentials:{account}:{digest_of(steady)}",
        f"CREDENTIALS: {account}",
        f"{warning}\n\nAccount: {account}\n\nUntil this is fixed, posts to {account} fail. "
        f"Check with `postscheduler accounts check {account}`.",
        account=account,
    )


def held_alert(post_id: str | None, file: str, errors: Sequence[str]) -> Alert:
    """A post file with errors: its posts are held (not sent) until it is fixed. One alert
    per post (or per file, when which posts it holds is unknown) with every error."""
    what = f"The post {post_id} is held" if post_id else f"The posts in {file} are held"
    listed = "\n".join(f"  {e}" for e in errors)
    return Alert(
        "held",
        f"held:{file}:{post_id or ''}:{digest_of(listed)}",
        f"HELD: {post_id or file}: its file has errors",
        f"{what}: not sent until the file is fixed.\n\nFile: {file}\nErrors:\n{listed}\n\n"
        "What to do: fix the file (`postscheduler validate` shows every error); the "
        "daemon picks the fix up within seconds. Left unfixed past late_grace after its "
        "time, the post is skipped as late.",
        post_id=post_id,
    )


def recovery_alert(started: dt.datetime, outcomes: Sequence[tuple[DeliveryKey, str]]) -> Alert:
    lines = [
        "The daemon started again after it stopped with deliveries in flight (a crash, a "
        "kill, a power cut). What it found for each:",
        "",
        *(f"  {key}: {what}" for key, what in outcomes),
        "",
        "Unconfirmed ones each have an alert of their own with the command to settle them.",
    ]
    return Alert(
        "recovered",
        f"recovered:{started.isoformat()}",
        "RESTARTED after a crash: "
        + ("1 delivery was" if len(outcomes) == 1 else f"{len(outcomes)} deliveries were")
        + " in flight",
        "\n".join(lines),
    )


def trouble_alert(kind: str, subject: str, body: str, *, scope: str = "") -> Alert:
    """The ledger or the posts folder unusable, an alert channel broken: once per problem."""
    return Alert(kind, f"{kind}:{scope}:{digest_of(body)}", subject, body)


def summary(sends: Sequence[AlertSend]) -> tuple[str, str]:
    """One message for many alerts: counted by kind, the first listed by name."""
    kinds: dict[str, int] = {}
    for send in sends:
        kinds[send.alert.kind] = kinds.get(send.alert.kind, 0) + 1
    counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda x: -x[1]))
    lines = [f"{len(sends)} alerts at once ({counted}):", ""]
    lines += [f"  {s.alert.subject}" for s in sends[:SUMMARY_LINES]]
    if len(sends) > SUMMARY_LINES:
        lines.append(f"  … and {len(sends) - SUMMARY_LINES} more")
    lines += [
        "",
        "What to do: `postscheduler status` lists every delivery that needs a person, with "
        "its reason; `postscheduler alerts list` shows each of these alerts in full.",
    ]
    return f"{len(sends)} alerts: {counted}", "\n".join(lines)
