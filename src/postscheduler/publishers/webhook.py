"""Signed webhook: POSTs each delivery as JSON to a URL of your own (a site's news feed, a bot).

Request headers:

- ``X-Postscheduler-Timestamp``: Unix seconds when it was signed;
- ``X-Postscheduler-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the account's
  secret, of ``"{timestamp}.{body}"`` (the raw body bytes);
- ``Idempotency-Key``: the delivery's identity, the same on every attempt, so a receiver can
  drop a repeat.

A receiver verifies by recomputing the HMAC over the timestamp and the raw body, comparing in
constant time, and refusing timestamps more than five minutes old (replays). Any 2xx means
published; a JSON answer's ``id`` and ``url`` are recorded. Nothing tells the sender whether a
request whose answer was lost arrived, so such a delivery ends ``unconfirmed``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from ..errors import PermanentError
from ..platforms.base import EnvRef
from ..platforms.webhook import WebhookAccount
from .base import Published, Publisher, PublishJob
from .http import send

SIGNATURE_HEADER = "X-Postscheduler-Signature"
TIMESTAMP_HEADER = "X-Postscheduler-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, max_age: float = 300) -> bool:
    """What a receiver does (and what the tests use): signature and freshness."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= max_age
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookPublisher(Publisher):
    platform = "webhook"

    def _url(self) -> str:
        assert isinstance(self.config, WebhookAccount)
        url = self.config.url
        if isinstance(url, EnvRef):
            value = url.resolve(self.env)
            if not value:
                raise PermanentError(f"url refers to ${{{url.name}}}, which is not set")
            return value
        return url

    def payload(self, job: PublishJob) -> dict[str, Any]:
        return job.as_record() | {"sent_at": dt.datetime.now(dt.UTC).isoformat()}

    async def publish(self, job: PublishJob) -> Published:
        assert self.http is not None, "the webhook publisher needs an HTTP client"
        url, secret = self._url(), self.secret("secret")
        body = json.dumps(self.payload(job), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            "Idempotency-Key": job.identity,
        }
        http = self.http
        response = await send(
            f"webhook {self.account}", lambda: http.post(url, content=body, headers=headers)
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return Published(str(answer.get("id") or job.identity), answer.get("url"))
        return Published(job.identity)

    async def check_credentials(self) -> str:
        url = self._url()
        self.secret("secret")
        # There is nothing to ask a webhook without publishing: check the address is there.
        return f"{httpx.URL(url).host} (secret set; receivers are not asked)"
