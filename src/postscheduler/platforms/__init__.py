"""The platforms postscheduler publishes to: one module each, and this registry.

Each module (``platforms/<name>.py``) holds everything offline about its platform: the
account model of ``scheduler.yaml``, the limits, how text is counted and links are shown, and
how a rendered part is really sent; it ends with ``PLATFORM``. Its HTTP side is
``publishers/<name>.py``. Config, rules, render, the CLI and the publishers all read this one
registry, so adding a platform is adding those two modules (and tests, and the README's
credentials), nothing else.
"""

from __future__ import annotations

from . import bluesky, discord, mastodon, outbox, slack, telegram, webhook, x
from .base import AccountConfig, Measure, Message, Platform, TextLimit

__all__ = [
    "PLATFORMS",
    "AccountConfig",
    "Measure",
    "Message",
    "Platform",
    "TextLimit",
    "get_platform",
]

# In the order the README and error messages list them.
PLATFORMS: dict[str, Platform] = {
    module.PLATFORM.name: module.PLATFORM
    for module in (outbox, mastodon, bluesky, x, telegram, discord, slack, webhook)
}


def get_platform(name: str) -> Platform:
    return PLATFORMS[name]
