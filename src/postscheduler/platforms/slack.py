"""Slack through an incoming webhook: 3,000 characters; images only by public URL, since
incoming webhooks cannot upload files."""

from __future__ import annotations

from typing import Literal

from . import counting
from .base import AccountConfig, Platform, Secret, TextLimit


class SlackAccount(AccountConfig):
    platform: Literal["slack"]
    webhook_url: Secret


PLATFORM = Platform(
    "slack",
    "Slack",
    SlackAccount,
    "SlackPublisher",
    (TextLimit("characters", counting.code_points, 3000),),
    max_image_bytes=None,
    image_files=False,  # incoming webhooks cannot upload; image blocks need a public URL
)
