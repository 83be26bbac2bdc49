"""Discord: an incoming webhook (``POST /webhooks/{id}/{token}?wait=true``).

``wait=true`` always: without it Discord answers 204 before saving the message, and a message
that fails is lost without a word. Mentions are disabled (``allowed_mentions: {parse: []}``)
so a post never pings a channel. An image file goes as a multipart attachment whose
``description`` is its alt text. Webhooks cannot reply, so thread parts are consecutive
messages. The webhook URL is the credential and never appears in a message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from .base import Published, Publisher, PublishJob
from .http import answer_field, answer_object, body_excerpt, error_body, number, send


def _retry_after(response: httpx.Response) -> float | None:
    value = error_body(response).get("retry_after")
    return number(value if value is not None else response.headers.get("retry-after"))


class DiscordPublisher(Publisher):
    platform = "discord"

    def _url(self) -> str:
        return self.secret("webhook_url")

    async def publish(self, job: PublishJob) -> Published:
        assert self.http is not None, "the Discord publisher needs an HTTP client"
        http, url = self.http, self._url()
        payload: dict[str, Any] = {"content": job.text, "allowed_mentions": {"parse": []}}
        if job.image is not None and job.image_path is not None:
            photo = Path(job.image_path)
            payload["attachments"] = [
                {"id": 0, "filename": photo.name, "description": job.image.alt[: self.spec.max_alt]}
            ]
            files = {"files[0]": (photo.name, photo.read_bytes())}
            form = {"payload_json": json.dumps(payload)}
            request = lambda: http.post(url, params={"wait": "true"}, data=form, files=files)  # noqa: E731
        else:
            if job.image is not None and job.image.url is not None:
                payload["embeds"] = [{"image": {"url": job.image.url}}]
            request = lambda: http.post(url, params={"wait": "true"}, json=payload)  # noqa: E731
        response = await send("discord", request, error_text=body_excerpt, retry_after=_retry_after)
        message = answer_object(response, "discord")
        return Published(answer_field(message, "id", "discord"), None)

    async def check_credentials(self) -> str:
        assert self.http is not None, "the Discord publisher needs an HTTP client"
        http, url = self.http, self._url()
        response = await send("discord", lambda: http.get(url))
        hook = answer_object(response, "discord")
        return f"webhook {hook.get('name')!r} (channel {hook.get('channel_id')})"
