"""Publishers, one module per platform; ``base`` holds the contract."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import OutcomeUnknownError, PermanentError, PublishError, TransientError
from .base import Published, Publisher, PublishJob, Resolution

if TYPE_CHECKING:
    import httpx

    from ..config import Settings

__all__ = [
    "OutcomeUnknownError",
    "PermanentError",
    "PublishError",
    "PublishJob",
    "Published",
    "Publisher",
    "Resolution",
    "TransientError",
    "make_publisher",
    "publisher_class",
]

# platform name -> module.Class, imported only when an account on that platform is used
_REGISTRY = {
    "outbox": "outbox.OutboxPublisher",
    "webhook": "webhook.WebhookPublisher",
    "telegram": "telegram.TelegramPublisher",
    "discord": "discord.DiscordPublisher",
    "slack": "slack.SlackPublisher",
    "x": "x.XPublisher",
    "mastodon": "mastodon.MastodonPublisher",
    "bluesky": "bluesky.BlueskyPublisher",
}


def publisher_class(platform: str) -> type[Publisher]:
    where = _REGISTRY.get(platform)
    if where is None:
        raise PermanentError(f"publishing to {platform} is not available yet in this version")
    module_name, class_name = where.split(".")
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls: type[Publisher] = getattr(module, class_name)
    return cls


def make_publisher(
    account: str,
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    http: httpx.AsyncClient | None = None,
) -> Publisher:
    config = settings.config.accounts[account]
    cls = publisher_class(config.platform)
    return cls(account, config, settings, env=settings.env if env is None else env, http=http)
