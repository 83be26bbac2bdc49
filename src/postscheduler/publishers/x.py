"""X (API v2): ``POST /2/tweets`` with OAuth 1.0a user-context signing.

Signing uses authlib's RFC 5849 implementation (signature base string, HMAC-SHA1, the
Authorization header), fed a fresh nonce and timestamp per request; ``tests`` check it against
X's documented example. Images go through ``POST /2/media/upload`` (polling ``processing_info``
when X asks), alt text through ``POST /2/media/metadata``, threads through
``reply.in_reply_to_tweet_id``.

X offers no idempotency key and no way to ask whether a lost create went through: an unknown
outcome ends ``unconfirmed``. Rate limits: ``x-rate-limit-reset`` is epoch seconds. A 403 for
duplicate content is permanent and explained; a 401 means the credentials are wrong.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from authlib.oauth1.rfc5849 import parameters, signature
from authlib.oauth1.rfc5849.wrapper import OAuth1Request

from ..config import XAccount
from .base import PermanentError, Published, Publisher, PublishJob, TransientError
from .http import send

MEDIA_POLL_LIMIT = 30  # checks of an image still being processed before giving up
MAX_IMAGE_BYTES = 5_000_000  # X's limit for images


def oauth1_authorization(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    form: Iterable[tuple[str, str]] = (),
    nonce: str | None = None,
    timestamp: str | None = None,
) -> str:
    """The ``Authorization: OAuth ...`` value for one request (HMAC-SHA1, RFC 5849).

    ``form`` holds the request's form-encoded body parameters, which are signed; JSON and
    multipart bodies are not part of the signature.
    """
    oauth = [
        ("oauth_consumer_key", consumer_key),
        ("oauth_nonce", nonce or secrets.token_hex(16)),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", timestamp or str(int(time.time()))),
        ("oauth_token", token),
        ("oauth_version", "1.0"),
    ]
    form = list(form)
    body = "&".join(f"{signature.escape(k)}={signature.escape(v)}" for k, v in form)
    headers = parameters.prepare_headers(
        oauth, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    request = OAuth1Request(method, url, body=body if form else None, headers=headers)
    base = signature.generate_signature_base_string(request)
    signed = signature.hmac_sha1_signature(base, consumer_secret, token_secret)
    header = parameters.prepare_headers(sorted([*oauth, ("oauth_signature", signed)]), {})
    return str(header["Authorization"])


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        if body.get("detail"):
            return str(body["detail"])
        errors = body.get("errors") or []
        if errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0].get("detail") or errors[0])
    return response.text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    reset = response.headers.get("x-rate-limit-reset")
    if reset is not None:
        try:
            return max(float(reset) - time.time(), 0.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    return float(value) if value and value.replace(".", "", 1).isdigit() else None


class XPublisher(Publisher):
    platform = "x"

    @property
    def _config(self) -> XAccount:
        assert isinstance(self.config, XAccount)
        return self.config

    def _auth(self, method: str, url: str) -> str:
        return oauth1_authorization(
            method,
            url,
            consumer_key=self.secret("consumer_key"),
            consumer_secret=self.secret("consumer_secret"),
            token=self.secret("access_token"),
            token_secret=self.secret("access_token_secret"),
        )

    async def _request(self, method: str, path: str, label: str, **kwargs: Any) -> Any:
        assert self.http is not None, "the X publisher needs an HTTP client"
        http = self.http
        url = f"{self._config.api_base}{path}"
        signed_url = str(httpx.URL(url, params=kwargs.get("params")))

        async def request() -> httpx.Response:
            headers = {"Authorization": self._auth(method, signed_url)}
            return await http.request(method, url, headers=headers, **kwargs)

        try:
            response = await send(
                f"x {label}", request, error_text=_error_text, retry_after=_retry_after
            )
        except PermanentError as exc:
            raise PermanentError(self._explain(exc.message)) from None
        return response.json() if response.content else {}

    @staticmethod
    def _explain(message: str) -> str:
        lowered = message.lower()
        if "duplicate" in lowered:
            return f"{message} (X refuses a post identical to a recent one: change the text)"
        if ": 401 " in message:
            return f"{message} (the X credentials are wrong, expired or revoked)"
        return message

    async def _image_bytes(self, job: PublishJob) -> tuple[str, bytes]:
        assert job.image is not None
        if job.image_path is not None:
            photo = Path(job.image_path)
            return photo.name, photo.read_bytes()
        assert job.image.url is not None and self.http is not None
        http, url = self.http, job.image.url
        response = await send("x image download", lambda: http.get(url))
        if len(response.content) > MAX_IMAGE_BYTES:
            raise PermanentError(f"x: the image at {url} is over {MAX_IMAGE_BYTES:,} bytes")
        return url.rsplit("/", 1)[-1] or "image", response.content

    async def _upload(self, job: PublishJob) -> str:
        assert job.image is not None
        name, content = await self._image_bytes(job)
        answer = await self._request(
            "POST",
            "/2/media/upload",
            "media upload",
            data={"media_category": "tweet_image"},
            files={"media": (name, content)},
        )
        media = answer.get("data", answer)
        media_id = str(media["id"])
        info = media.get("processing_info")
        for _ in range(MEDIA_POLL_LIMIT):
            if not info or info.get("state") == "succeeded":
                break
            if info.get("state") == "failed":
                raise PermanentError(f"x media upload: processing failed: {info.get('error')}")
            await asyncio.sleep(float(info.get("check_after_secs", 1)))
            status = await self._request(
                "GET",
                "/2/media/upload",
                "media status",
                params={"command": "STATUS", "media_id": media_id},
            )
            info = status.get("data", status).get("processing_info")
        else:
            raise TransientError("x media upload: still processing; will try again")
        await self._request(
            "POST",
            "/2/media/metadata",
            "media alt text",
            json={"id": media_id, "metadata": {"alt_text": {"text": job.image.alt[:1000]}}},
        )
        return media_id

    async def publish(self, job: PublishJob) -> Published:
        body: dict[str, Any] = {"text": job.text}
        if job.reply_to and job.reply_to.remote_id:
            body["reply"] = {"in_reply_to_tweet_id": job.reply_to.remote_id}
        if job.image is not None:
            body["media"] = {"media_ids": [await self._upload(job)]}
        answer = await self._request("POST", "/2/tweets", "create post", json=body)
        tweet_id = str(answer["data"]["id"])
        return Published(tweet_id, f"https://x.com/i/web/status/{tweet_id}")

    async def check_credentials(self) -> str:
        answer = await self._request("GET", "/2/users/me", "users/me")
        return f"@{answer['data']['username']}"
