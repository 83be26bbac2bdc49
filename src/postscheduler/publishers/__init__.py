"""Publishers, one module per platform; ``base`` holds the contract."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import OutcomeUnknownError, PermanentError, PublishError, TransientError
from ..platforms import PLATFORMS
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


def publisher_class(platform: str) -> type[Publisher]:
    """The publisher of a registered platform: ``publishers/<platform>.py``, imported only
    when an account on that platform is used."""
    spec = PLATFORMS.get(platform)
    if spec is None:
        raise PermanentError(f"publishing to {platform} is not available in this version")
    module = importlib.import_module(f"{__name__}.{platform}")
    cls: type[Publisher] = getattr(module, spec.publisher)
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
