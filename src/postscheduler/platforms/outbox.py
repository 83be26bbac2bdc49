"""The outbox: the embedded default, which writes each delivery to a local folder.

It has no limits of its own (an account may set ``max_characters``) and takes any image.
"""

from __future__ import annotations

from typing import Literal

from .base import AccountConfig, LocalPath, Platform


class OutboxAccount(AccountConfig):
    """Writes what would be published to a local folder: the embedded default."""

    platform: Literal["outbox"]
    path: LocalPath = "outbox"


PLATFORM = Platform(
    "outbox",
    "Outbox",
    OutboxAccount,
    "OutboxPublisher",
    (),
    max_image_bytes=None,
    image_formats=None,
    content_warnings=True,  # recorded with the delivery
)
