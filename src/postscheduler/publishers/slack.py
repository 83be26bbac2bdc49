"""Slack: an incoming webhook. Text plus, for an image given by URL, an image block with its
``alt_text`` (webhooks cannot upload files; ``validate`` refuses image files for Slack).

The only confirmation Slack gives is the plain answer ``ok``: no message id, so a delivery's
remote id is its identity. The webhook URL is the credential and never appears in a message.
"""

from __future__ import annotations

from typing import Any

from ..errors import OutcomeUnknownError, PermanentError
from .base import Published, Publisher, PublishJob
from .http import send


def escape(text: str) -> str:
    """Slack's mrkdwn control characters, escaped as its documentation asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackPublisher(Publisher):
    platform = "slack"

    async def publish(self, job: PublishJob) -> Published:
        assert self.http is not None, "the Slack publisher needs an HTTP client"
        if job.image is not None and job.image.url is None:
            # validate refuses this; never post without the picture the credit refers to
            raise PermanentError("slack: webhooks cannot upload image files; give image.url")
        http, url = self.http, self.secret("webhook_url")
        text = escape(job.text)
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        ]
        if job.image is not None and job.image.url is not None:
            blocks.append(
                {"type": "image", "image_url": job.image.url, "alt_text": job.image.alt[:2000]}
            )
        payload = {"text": text, "blocks": blocks, "unfurl_links": True}
        response = await send("slack", lambda: http.post(url, json=payload))
        if response.text.strip() != "ok":
            # 200 without "ok" is not in Slack's documentation: it may have been posted.
            raise OutcomeUnknownError(f"slack: unexpected answer {response.text[:200]!r}")
        return Published(job.identity)

    async def check_credentials(self) -> str:
        self.secret("webhook_url")
        return "webhook set (Slack offers no way to check one without posting)"
