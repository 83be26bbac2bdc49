"""Mastodon: ``POST /api/v1/statuses`` with an ``Idempotency-Key``, images through
``POST /api/v2/media``.

The key is the delivery's identity, so a resend after a lost answer or a crash returns the
status created the first time instead of a second one. Mastodon keeps keys for an hour per
account, and a daemon may be down for longer: after a crash, the account's recent statuses
are searched for the in-doubt one (same text, same parent, created after its due time)
before anything is resent. Media that the server is still processing (202, ``url: null``)
is polled at ``GET /api/v1/media/:id`` (206 while processing) before the status is posted.
Rate limits: ``X-RateLimit-Reset`` is an ISO-8601 time, not epoch seconds. A 422 is
permanent and its ``error`` (in the server's language) reaches the user word for word.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
from typing import Any

import httpx

from ..errors import TransientError
from ..platforms.mastodon import MastodonAccount
from .base import CLOCK_SKEW, Published, Publisher, PublishJob, Resolution
from .http import (
    answer_field,
    answer_list,
    answer_object,
    answer_url,
    body_excerpt,
    error_body,
    retry_after_seconds,
    send,
)

MEDIA_POLL_LIMIT = 20  # checks, waiting 0.2 s, 0.4 s, ... up to 5 s between them
MEDIA_POLL_FIRST = 0.2  # seconds
RECENT_STATUSES = 40  # the most one page of an account's statuses holds


def plain_text(content_html: str) -> str:
    """A status's HTML ``content`` as words, for comparing with the text that was sent."""
    text = re.sub(r"<br\s*/?>|</p>\s*<p>", "\n", content_html)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())


def _sent_words(text: str) -> str:
    # Mastodon shows a remote mention "@name@host" as "@name".
    return " ".join(re.sub(r"(@\w+)@[\w.-]+\w", r"\1", text).split())


def error_text(response: httpx.Response) -> str:
    body = error_body(response)
    return str(body["error"]) if "error" in body else body_excerpt(response)


def rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (ISO 8601 on Mastodon), else ``Retry-After``."""
    reset = response.headers.get("x-ratelimit-reset")
    if reset:
        try:
            when = dt.datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None:
            return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)
    return retry_after_seconds(response)


class MastodonPublisher(Publisher):
    platform = "mastodon"
    idempotent = True  # Idempotency-Key

    @property
    def _config(self) -> MastodonAccount:
        assert isinstance(self.config, MastodonAccount)
        return self.config

    async def _call(self, method: str, path: str, label: str, **kwargs: Any) -> httpx.Response:
        assert self.http is not None, "the Mastodon publisher needs an HTTP client"
        http = self.http
        url = f"{self._config.instance}{path}"
        headers = {"Authorization": f"Bearer {self.secret('token')}", **kwargs.pop("headers", {})}
        return await send(
            f"mastodon {label}",
            lambda: http.request(method, url, headers=headers, **kwargs),
            error_text=error_text,
            retry_after=rate_limit_wait,
        )

    async def _upload(self, job: PublishJob) -> str:
        assert job.image is not None
        name, content = await self.image_bytes(job, self.image_limit())
        response = await self._call(
            "POST",
            "/api/v2/media",
            "media upload",
            data={"description": job.image.alt},
            files={"file": (name, content)},
        )
        media = answer_object(response, "mastodon media upload")
        media_id = answer_field(media, "id", "mastodon media upload")
        for attempt in range(MEDIA_POLL_LIMIT):
            if response.status_code == 200 and media.get("url"):
                return media_id
            await asyncio.sleep(min(MEDIA_POLL_FIRST * 2**attempt, 5.0))
            response = await self._call("GET", f"/api/v1/media/{media_id}", "media status")
            media = answer_object(response, "mastodon media status")
        raise TransientError("mastodon media upload: still processing; will try again")

    async def publish(self, job: PublishJob) -> Published:
        form: dict[str, str | list[str]] = {
            "status": job.text,
            "visibility": self._config.visibility,
        }
        language = job.language or self._config.language
        if language:
            form["language"] = language
        if job.content_warning:
            form["spoiler_text"] = job.content_warning
        if job.reply_to and job.reply_to.remote_id:
            form["in_reply_to_id"] = job.reply_to.remote_id
        if job.image is not None:
            form["media_ids[]"] = [await self._upload(job)]
        response = await self._call(
            "POST",
            "/api/v1/statuses",
            "create status",
            data=form,
            headers={"Idempotency-Key": job.identity},
        )
        status = answer_object(response, "mastodon create status")
        return Published(
            answer_field(status, "id", "mastodon create status"), answer_url(status, "url")
        )

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        me = answer_object(
            await self._call("GET", "/api/v1/accounts/verify_credentials", "verify"),
            "mastodon verify",
        )
        response = await self._call(
            "GET",
            f"/api/v1/accounts/{answer_field(me, 'id', 'mastodon verify')}/statuses",
            "recent statuses",
            params={"limit": RECENT_STATUSES, "exclude_reblogs": "true"},
        )
        words = _sent_words(job.text)
        parent = job.reply_to.remote_id if job.reply_to else None
        for status in answer_list(response, "mastodon recent statuses"):
            try:
                created = dt.datetime.fromisoformat(
                    str(status["created_at"]).replace("Z", "+00:00")
                )
            except (KeyError, ValueError):
                continue
            if (
                created >= job.due_at - CLOCK_SKEW
                and status.get("in_reply_to_id") == parent
                and plain_text(str(status.get("content", ""))) == words
            ):
                return Published(
                    answer_field(status, "id", "mastodon recent statuses"),
                    answer_url(status, "url"),
                )
        return Resolution.NOT_SENT  # resent with the same Idempotency-Key

    async def check_credentials(self) -> str:
        account = answer_object(
            await self._call("GET", "/api/v1/accounts/verify_credentials", "verify"),
            "mastodon verify",
        )
        host = httpx.URL(self._config.instance).host
        return f"@{account.get('acct')}@{host}"

    @property
    def limits_source(self) -> str:
        return self._config.instance

    async def fetch_limits(self) -> dict[str, int]:
        assert self.http is not None, "the Mastodon publisher needs an HTTP client"
        return await instance_limits(self.http, self._config.instance)

    def with_limits(self, limits: dict[str, int]) -> MastodonAccount:
        """The account counted as its instance counts; what the account sets itself wins."""
        account = self._config
        update: dict[str, int] = {}
        if account.max_characters is None and "max_characters" in limits:
            update["max_characters"] = limits["max_characters"]
        if "characters_reserved_per_url" in limits:
            update["characters_reserved_per_url"] = limits["characters_reserved_per_url"]
        if account.max_image_bytes is None and "image_size_limit" in limits:
            update["max_image_bytes"] = limits["image_size_limit"]
        return account.model_copy(update=update)


async def instance_limits(http: httpx.AsyncClient, instance: str) -> dict[str, int]:
    """The instance's own limits from ``GET /api/v2/instance`` (no token needed).

    Forks and configured servers differ widely from the 500-character default; ``validate
    --online`` counts against these.
    """
    url = f"{instance.rstrip('/')}/api/v2/instance"
    response = await send("mastodon instance", lambda: http.get(url), error_text=error_text)

    def part(data: object, key: str) -> dict[str, Any]:
        value = data.get(key) if isinstance(data, dict) else None
        return value if isinstance(value, dict) else {}

    config = part(error_body(response), "configuration")  # any shape the server answers
    statuses = part(config, "statuses")
    media = part(config, "media_attachments")
    limits = {
        "max_characters": statuses.get("max_characters"),
        "characters_reserved_per_url": statuses.get("characters_reserved_per_url"),
        "max_media_attachments": statuses.get("max_media_attachments"),
        "image_size_limit": media.get("image_size_limit"),
    }
    return {k: v for k, v in limits.items() if isinstance(v, int) and not isinstance(v, bool)}
