"""X (API v2): ``POST /2/tweets`` as the user, by OAuth 1.0a signing or an OAuth 2.0 token.

Signing uses authlib's RFC 5849 implementation (signature base string, HMAC-SHA1, the
Authorization header), fed a fresh nonce and timestamp per request; ``tests`` check it against
X's documented example. Images go through ``POST /2/media/upload`` (polling ``processing_info``
when X asks), alt text through ``POST /2/media/metadata``, threads through
``reply.in_reply_to_tweet_id``.

With OAuth 2.0 the access token (2 h) is renewed from the refresh token, which X rotates on
every use: the newest is written at once beside the ledger (mode 0600) and read from there on
the next start, before the one in the environment.

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

from ..errors import PermanentError, TransientError
from ..platforms.x import XAccount
from ..redact import learn_secret
from .base import Published, Publisher, PublishJob, write_private_file
from .http import (
    answer_field,
    answer_object,
    body_excerpt,
    epoch_reset,
    error_body,
    number,
    send,
)

MEDIA_POLL_LIMIT = 30  # checks of an image still being processed before giving up


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
    body = error_body(response)
    if body.get("detail"):
        return str(body["detail"])
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or errors[0].get("detail") or errors[0])
    return body_excerpt(response)


_retry_after = epoch_reset("x-rate-limit-reset")


def _data(answer: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` object X's v2 answers wrap their result in (the media endpoints'
    answers have been seen without it)."""
    data = answer.get("data", answer)
    return data if isinstance(data, dict) else {}


def _processing(media: dict[str, Any]) -> dict[str, Any] | None:
    info = media.get("processing_info")
    return info if isinstance(info, dict) else None


class XPublisher(Publisher):
    platform = "x"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._access: str | None = None  # OAuth 2.0 access token, ~2 h
        self._expires = 0.0
        self._token_lock = asyncio.Lock()

    @property
    def _config(self) -> XAccount:
        assert isinstance(self.config, XAccount)
        return self.config

    # --- OAuth 2.0: refresh tokens rotate, so the newest is kept beside the ledger ----------

    @property
    def _token_file(self) -> Path:
        return self.settings.state_dir / f"x-{self.account}.refresh-token"

    def _stored_refresh_token(self) -> str | None:
        try:
            token = self._token_file.read_text().strip() or None
        except FileNotFoundError:
            return None
        learn_secret(token)
        return token

    def _store_refresh_token(self, token: str) -> None:
        write_private_file(self._token_file, token)  # the old one is spent once X rotated it

    async def _bearer(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            if self._access and not renew and time.time() < self._expires - 60:
                return self._access
            assert self.http is not None
            http, config = self.http, self._config
            form = {
                "grant_type": "refresh_token",
                "refresh_token": self._stored_refresh_token() or self.secret("refresh_token"),
                "client_id": str(config.client_id),
            }
            auth = None
            if config.client_secret is not None:
                auth = httpx.BasicAuth(str(config.client_id), self.secret("client_secret"))
            url = f"{config.api_base}/2/oauth2/token"
            try:
                response = await send(
                    "x token refresh",
                    lambda: (
                        http.post(url, data=form, auth=auth) if auth else http.post(url, data=form)
                    ),
                    error_text=_error_text,
                )
            except PermanentError as exc:
                raise PermanentError(
                    f"{exc.message} (the refresh token was revoked or already used: "
                    "authorize the app again and set a new refresh_token)"
                ) from None
            answer = answer_object(response, "x token refresh")
            # The new refresh token first: the one just used no longer works, whatever else
            # the answer lacks.
            refresh = answer.get("refresh_token")
            if isinstance(refresh, str) and refresh:
                learn_secret(refresh)
                self._store_refresh_token(refresh)
            self._access = answer_field(answer, "access_token", "x token refresh")
            learn_secret(self._access)
            self._expires = time.time() + (number(answer.get("expires_in")) or 7200)
            return self._access

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

        async def request(renew: bool = False) -> httpx.Response:
            if self._config.uses_oauth2:
                authorization = f"Bearer {await self._bearer(renew=renew)}"
            else:
                authorization = self._auth(method, signed_url)
            headers = {"Authorization": authorization}
            return await http.request(method, url, headers=headers, **kwargs)

        label = f"x {label}"
        try:
            response = await send(label, request, error_text=_error_text, retry_after=_retry_after)
        except PermanentError as exc:
            if not (self._config.uses_oauth2 and ": 401 " in exc.message):
                raise PermanentError(self._explain(exc.message)) from None
            # The access token expired early or was revoked: a 401 was not acted on, so
            # renewing the token and asking once more is safe.
            try:
                response = await send(
                    label,
                    lambda: request(renew=True),
                    error_text=_error_text,
                    retry_after=_retry_after,
                )
            except PermanentError as again:
                raise PermanentError(self._explain(again.message)) from None
        return answer_object(response, label) if response.content else {}

    @staticmethod
    def _explain(message: str) -> str:
        lowered = message.lower()
        if "duplicate" in lowered:
            return f"{message} (X refuses a post identical to a recent one: change the text)"
        if ": 401 " in message:
            return f"{message} (the X credentials are wrong, expired or revoked)"
        return message

    async def _upload(self, job: PublishJob) -> str:
        assert job.image is not None
        name, content = await self.image_bytes(job, self.image_limit())
        answer = await self._request(
            "POST",
            "/2/media/upload",
            "media upload",
            data={"media_category": "tweet_image"},
            files={"media": (name, content)},
        )
        media = _data(answer)
        media_id = answer_field(media, "id", "x media upload")
        info = _processing(media)
        for _ in range(MEDIA_POLL_LIMIT):
            if not info or info.get("state") == "succeeded":
                break
            if info.get("state") == "failed":
                raise PermanentError(f"x media upload: processing failed: {info.get('error')}")
            await asyncio.sleep(min(max(number(info.get("check_after_secs")) or 1.0, 0.0), 60.0))
            status = await self._request(
                "GET",
                "/2/media/upload",
                "media status",
                params={"command": "STATUS", "media_id": media_id},
            )
            info = _processing(_data(status))
        else:
            raise TransientError("x media upload: still processing; will try again")
        await self._request(
            "POST",
            "/2/media/metadata",
            "media alt text",
            json={
                "id": media_id,
                "metadata": {"alt_text": {"text": job.image.alt[: self.spec.max_alt]}},
            },
        )
        return media_id

    async def publish(self, job: PublishJob) -> Published:
        body: dict[str, Any] = {"text": job.text}
        if job.reply_to and job.reply_to.remote_id:
            body["reply"] = {"in_reply_to_tweet_id": job.reply_to.remote_id}
        if job.image is not None:
            body["media"] = {"media_ids": [await self._upload(job)]}
        answer = await self._request("POST", "/2/tweets", "create post", json=body)
        tweet_id = answer_field(_data(answer), "id", "x create post")
        return Published(tweet_id, f"https://x.com/i/web/status/{tweet_id}")

    async def check_credentials(self) -> str:
        answer = await self._request("GET", "/2/users/me", "users/me")
        return f"@{_data(answer).get('username')}"
