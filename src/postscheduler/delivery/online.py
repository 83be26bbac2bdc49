"""``validate --online``: the checks that ask each account's platform.

What a platform publishes of its own limits (a Mastodon instance's ``max_characters``) and
whether a text's @mentions name real accounts can only be asked of the platform; the
publisher of each account knows how (``Publisher.fetch_limits``, ``with_limits``,
``unresolved_mentions``). Images that Instagram and Threads fetch themselves are fetched
from their public address, as those platforms will, and compared with the file.
Limits are cached beside the ledger for a day per source, so ``validate --online`` in CI asks
each server at most once a day.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from ..config import Settings
from ..errors import (
    FetchError,
    Finding,
    ImageError,
    PostschedulerError,
    PublishError,
    error,
    warning,
)
from ..posts.images import public_image_url, resolve_image_path
from ..posts.loader import Catalog, SourcedPost
from ..posts.render import render_post, target_accounts
from ..posts.rules import image_locations, text_location
from ..publishers import Publisher, make_publisher

LIMITS_CACHE = "instance-limits.json"
LIMITS_TTL = 24 * 3600  # servers change their limits rarely


def _client() -> Any:
    import httpx

    return httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0))


async def with_online_limits(settings: Settings) -> Settings:
    """``settings`` with each account's limits as its platform publishes them."""
    cache_file = settings.state_dir / LIMITS_CACHE
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    accounts = dict(settings.config.accounts)
    async with _client() as http:
        for name in settings.config.accounts:
            publisher = make_publisher(name, settings, http=http)
            source = publisher.limits_source
            if source is None:
                continue
            entry = cache.get(source)
            if entry is None or time.time() - entry["at"] > LIMITS_TTL:
                try:
                    entry = {"at": time.time(), "limits": await publisher.fetch_limits()}
                except PublishError as exc:
                    raise PostschedulerError(
                        f"account {name}: cannot read the limits of {source}: {exc.message}"
                    ) from None
                cache[source] = entry
            accounts[name] = publisher.with_limits(entry["limits"])
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=2))
    except OSError:
        pass  # a cache that cannot be written only costs a request next time
    return dataclasses.replace(
        settings, config=settings.config.model_copy(update={"accounts": accounts})
    )


async def unresolved_mentions(catalog: Catalog, settings: Settings) -> list[Finding]:
    """Warnings for @mentions that name no account on the platform they are published to.

    Bluesky links a mention only when the handle resolves to an account; one that does not
    (a typo, a handle that changed) is published as plain text, so ``validate --online``
    says so while it can still be fixed.
    """
    findings: list[Finding] = []
    async with _client() as http:
        publishers: dict[str, Publisher] = {}
        for sp in catalog.posts:
            for account in target_accounts(sp.post, settings):
                if account not in settings.config.accounts:
                    continue
                if account not in publishers:
                    publishers[account] = make_publisher(account, settings, http=http)
                findings.extend(await _mentions_of(sp, account, publishers[account], settings))
    return findings


async def _mentions_of(
    sp: SourcedPost, account: str, publisher: Publisher, settings: Settings
) -> list[Finding]:
    rendering = render_post(sp.post, account, settings)
    findings = []
    for part in rendering.parts:
        try:
            handles = await publisher.unresolved_mentions(part.text)
        except PublishError as exc:
            raise PostschedulerError(
                f"account {account}: cannot check the @mentions of {sp.id}: {exc.message}"
            ) from None
        for handle in handles:
            findings.append(
                warning(
                    "mention-unresolved",
                    f"@{handle} is no {rendering.platform.label} account: it will be plain "
                    "text, not a mention",
                    hint="check the handle (it may have changed) or remove the @",
                    **sp.where(*text_location(sp, rendering, part.index), account=account),
                )
            )
    return findings


async def served_images(catalog: Catalog, settings: Settings) -> list[Finding]:
    """Errors for image files that a platform fetching images itself (Instagram, Threads)
    would not find at their public address under ``media_url``, or would find different
    (the image was not pushed, or an older one is served)."""
    import hashlib

    from ..publishers.base import IMAGE_TYPES
    from ..publishers.fetch import Fence, fetch

    media_url = settings.config.media_url
    if media_url is None:
        return []  # validate already says a file image needs it
    link_cards = settings.config.link_cards
    fence = Fence(
        max_bytes=64 * 1024 * 1024,
        timeout=60.0,
        allow_private=link_cards.allow_private_addresses,
    )
    served: dict[str, tuple[str, str]] = {}  # url -> (sha256 of what it serves, or a problem)
    findings: list[Finding] = []
    async with _client() as http:
        for sp in catalog.posts:
            for account in target_accounts(sp.post, settings):
                if account not in settings.config.accounts:
                    continue
                rendering = render_post(sp.post, account, settings)
                if not rendering.platform.pulls_images:
                    continue
                for loc, image in image_locations(sp, rendering):
                    url = public_image_url(image, media_url)
                    if image.file is None or url is None:
                        continue
                    try:
                        path = resolve_image_path(settings.posts_dir, image.file)
                        want = hashlib.sha256(path.read_bytes()).hexdigest()
                    except (ImageError, OSError):
                        continue  # validate reports the file itself
                    if url not in served:
                        try:
                            got = await fetch(http, url, fence, accept=IMAGE_TYPES)
                            served[url] = (hashlib.sha256(got.body).hexdigest(), "")
                        except FetchError as exc:
                            served[url] = ("", f"cannot be fetched: {exc}")
                    digest, problem = served[url]
                    if digest == want:
                        continue
                    problem = problem or "serves a different file (an older version?)"
                    findings.append(
                        error(
                            "image-not-served",
                            f"{rendering.platform.label} fetches {image.file} from {url}, which "
                            f"{problem}",
                            hint="push posts/ to where media_url serves it (or fix media_url) "
                            "before the post is due",
                            **sp.where(*loc, "file", account=account),
                        )
                    )
    return findings
