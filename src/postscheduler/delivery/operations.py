"""What a person does to deliveries: send now, retry, resolve, check accounts.

Each function changes the ledger, then sends what it made due, either itself (when no daemon
holds the ledger) or by leaving it to the running daemon, which rescans the ledger every few
seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

from ..config import Settings
from ..errors import Finding, PostschedulerError, PublishError, warning
from ..ledger import (
    Delivery,
    DeliveryKey,
    DeliveryState,
    Ledger,
    LedgerLockedError,
    open_ledger,
)
from ..posts.loader import Catalog, SourcedPost
from ..posts.render import render_post, target_accounts
from ..posts.rules import text_location, validate
from ..publishers import make_publisher
from ..redact import Redactor
from .engine import Engine, content_hash, utc_now


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation did: the deliveries it touched, as they are now."""

    deliveries: list[Delivery]
    sent_by_daemon: bool  # a running daemon holds the ledger and will send them


def _accounts(settings: Settings, post_accounts: list[str], only: str | None) -> list[str]:
    if only is None:
        return post_accounts
    if only not in post_accounts:
        raise PostschedulerError(
            f"the post does not go to {only!r} (it goes to {', '.join(post_accounts)})"
        )
    return [only]


async def _send(settings: Settings, ledger: Ledger, groups: Iterable[tuple[str, str]]) -> bool:
    """Send ``groups`` now if no daemon holds the ledger; True if a daemon will instead."""
    try:
        with ledger.acquire_daemon_lock():
            engine = Engine(settings, ledger, redact=Redactor.for_settings(settings))
            engine.load(validate(settings, now=utc_now()))
            try:
                for post_id, account in groups:
                    await engine.deliver(post_id, account)
            finally:
                await engine.aclose()
    except LedgerLockedError:
        return True
    return False


def _rows(ledger: Ledger, keys: Iterable[DeliveryKey]) -> list[Delivery]:
    return [row for key in keys if (row := ledger.get(key)) is not None]


def publish_now(settings: Settings, post_id: str, account: str | None = None) -> Outcome:
    """Send a post now instead of at its time; published parts are never sent again."""
    catalog = validate(settings, now=utc_now())
    sp = catalog.get(post_id)
    errors = catalog.errors_for(post_id)
    if errors:
        raise PostschedulerError(
            f"post {post_id!r} has errors; fix them first:\n  "
            + "\n  ".join(f.as_text() for f in errors)
        )
    now = utc_now()
    keys: list[DeliveryKey] = []
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        for name in _accounts(settings, target_accounts(sp.post, settings), account):
            for part in render_post(sp.post, name, settings).parts:
                key = DeliveryKey(post_id, name, part.index)
                row = ledger.plan(key, sp.post.at or now, content_hash(part), now)
                if row.state is DeliveryState.UNCONFIRMED:
                    raise PostschedulerError(
                        f"{key} may already have been published: settle it first with "
                        f"`postscheduler resolve {post_id} --account {name} --sent|--resend`"
                    )
                if row.state is not DeliveryState.PUBLISHED:
                    ledger.requeue(key, now, "publish --now", now)
                keys.append(key)
        groups = dict.fromkeys((k.post_id, k.account) for k in keys)
        by_daemon = asyncio.run(_send(settings, ledger, groups))
        return Outcome(_rows(ledger, keys), by_daemon)


def retry_failed(settings: Settings, post_id: str | None = None) -> Outcome:
    """Send failed deliveries again (all of them, or one post's)."""
    now = utc_now()
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        failed = ledger.deliveries(post_id=post_id, states=[DeliveryState.FAILED])
        if not failed:
            raise PostschedulerError(
                "nothing failed" + (f" for post {post_id!r}" if post_id else "")
            )
        for row in failed:
            ledger.requeue(row.key, now, "retry requested", now)
        groups = dict.fromkeys((r.key.post_id, r.key.account) for r in failed)
        by_daemon = asyncio.run(_send(settings, ledger, groups))
        return Outcome(_rows(ledger, [r.key for r in failed]), by_daemon)


def resolve_unconfirmed(settings: Settings, post_id: str, account: str, *, sent: bool) -> Outcome:
    """A person's answer for an unconfirmed delivery: it was sent, or send it again."""
    now = utc_now()
    with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
        rows = ledger.deliveries(
            post_id=post_id, account=account, states=[DeliveryState.UNCONFIRMED]
        )
        if not rows:
            raise PostschedulerError(f"nothing of {post_id!r} to {account!r} is unconfirmed")
        for row in rows:
            if sent:
                ledger.record_published(row.key, None, None, now, detail="confirmed by hand")
            else:
                ledger.requeue(row.key, now, "resend requested by hand", now)
        by_daemon = False
        if not sent:
            by_daemon = asyncio.run(_send(settings, ledger, [(post_id, account)]))
        return Outcome(_rows(ledger, [r.key for r in rows]), by_daemon)


@dataclasses.dataclass(frozen=True, slots=True)
class AccountCheck:
    account: str
    platform: str
    ok: bool
    detail: str


async def check_accounts(settings: Settings, only: str | None = None) -> list[AccountCheck]:
    """Verify each account's credentials with its platform, concurrently."""
    import httpx

    names = [only] if only else list(settings.config.accounts)
    redact = Redactor.for_settings(settings)

    async def check(name: str, http: httpx.AsyncClient) -> AccountCheck:
        platform = settings.config.accounts[name].platform
        try:
            publisher = make_publisher(name, settings, http=http)
            try:
                detail = await publisher.check_credentials()
            finally:
                await publisher.aclose()
        except PublishError as exc:
            return AccountCheck(name, platform, False, redact(exc.message))
        return AccountCheck(name, platform, True, redact(detail))

    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as http:
        return list(await asyncio.gather(*(check(n, http) for n in names)))


LIMITS_CACHE = "instance-limits.json"
LIMITS_TTL = 24 * 3600  # instances change their limits rarely


async def with_online_limits(settings: Settings) -> Settings:
    """``settings`` with each Mastodon account's limits as its instance publishes them.

    Answers are cached per instance for a day beside the ledger, so `validate --online`
    in CI asks each server at most once a day.
    """
    import json
    import time

    import httpx

    from ..platforms.mastodon import MastodonAccount
    from ..publishers.mastodon import instance_limits

    cache_file = settings.ledger_path.parent / LIMITS_CACHE
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    accounts = dict(settings.config.accounts)
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
        for name, account in settings.config.accounts.items():
            if not isinstance(account, MastodonAccount):
                continue
            entry = cache.get(account.instance)
            if entry is None or time.time() - entry["at"] > LIMITS_TTL:
                try:
                    entry = {
                        "at": time.time(),
                        "limits": await instance_limits(http, account.instance),
                    }
                except PublishError as exc:
                    raise PostschedulerError(
                        f"account {name}: cannot read the limits of {account.instance}: "
                        f"{exc.message}"
                    ) from None
                cache[account.instance] = entry
            limits = entry["limits"]
            update = {}
            if account.max_characters is None and "max_characters" in limits:
                update["max_characters"] = limits["max_characters"]
            if "characters_reserved_per_url" in limits:
                update["characters_reserved_per_url"] = limits["characters_reserved_per_url"]
            if account.max_image_bytes is None and "image_size_limit" in limits:
                update["max_image_bytes"] = limits["image_size_limit"]
            accounts[name] = account.model_copy(update=update)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=2))
    except OSError:
        pass  # a cache that cannot be written only costs a request next time
    return dataclasses.replace(
        settings, config=settings.config.model_copy(update={"accounts": accounts})
    )


async def unresolved_mentions(catalog: Catalog, settings: Settings) -> list[Finding]:
    """Warnings for ``@handle`` mentions that no Bluesky account answers to.

    Bluesky links a mention only when the handle resolves to an account; one that does not
    (a typo, a handle that changed) is published as plain text, so ``validate --online``
    says so while it can still be fixed. Each handle is asked about once, without a login.
    """
    import httpx

    from ..platforms.bluesky import BlueskyAccount, detect_facets

    where_used: dict[tuple[str, str], list[tuple[SourcedPost, str, tuple[str | int, ...]]]] = {}
    for sp in catalog.posts:
        for account in target_accounts(sp.post, settings):
            config = settings.config.accounts.get(account)
            if not isinstance(config, BlueskyAccount):
                continue
            service = str(config.service).rstrip("/")
            rendering = render_post(sp.post, account, settings)
            for part in rendering.parts:
                for facet in detect_facets(part.text):
                    handle = facet["features"][0].get("handle")
                    if handle:
                        where_used.setdefault((service, handle), []).append(
                            (sp, account, text_location(sp, rendering, part.index))
                        )
    findings: list[Finding] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
        for (service, handle), uses in where_used.items():
            url = f"{service}/xrpc/com.atproto.identity.resolveHandle"
            try:
                answer = await http.get(url, params={"handle": handle})
            except httpx.HTTPError as exc:
                raise PostschedulerError(
                    f"cannot ask {service} about @{handle}: {type(exc).__name__}"
                ) from None
            if answer.status_code == 200:
                continue
            if answer.status_code != 400:
                raise PostschedulerError(
                    f"cannot ask {service} about @{handle}: HTTP {answer.status_code}"
                )
            for sp, account, loc in uses:
                findings.append(
                    warning(
                        "mention-unresolved",
                        f"@{handle} is no Bluesky account: it will be plain text, not a mention",
                        hint="check the handle (it may have changed) or remove the @",
                        **sp.where(*loc, account=account),
                    )
                )
    return findings
