"""Discord through a channel webhook: 2,000 characters (code points), images up to 10 MiB
with alt text up to 1,024 characters."""

from __future__ import annotations

from typing import Literal

from . import counting
from .base import AccountConfig, MiB, Platform, Secret, TextLimit


class DiscordAccount(AccountConfig):
    platform: Literal["discord"]
    webhook_url: Secret  # the URL is the credential


PLATFORM = Platform(
    "discord",
    "Discord",
    DiscordAccount,
    "DiscordPublisher",
    (TextLimit("characters", counting.code_points, 2000),),
    max_image_bytes=10 * MiB,
    max_alt=1024,
)
