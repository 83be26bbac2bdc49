"""A webhook of your own: each delivery POSTed as signed JSON; no limits of its own."""

from __future__ import annotations

from typing import Literal

from .base import AccountConfig, Platform, Secret, UrlOrSecret


class WebhookAccount(AccountConfig):
    platform: Literal["webhook"]
    url: UrlOrSecret
    secret: Secret


PLATFORM = Platform(
    "webhook",
    "Webhook",
    WebhookAccount,
    "WebhookPublisher",
    (),
    max_image_bytes=None,
    image_formats=None,
    content_warnings=True,  # recorded with the delivery
)
