"""What each platform accepts: how it counts text, its limits, what images it takes.

These are offline facts (sources in docs/platforms.md), used by ``validate``, ``queue`` and
``preview`` without touching the network. A publisher may learn tighter or looser values at
run time (Mastodon instances publish theirs); the account's ``max_characters`` overrides the
default here. This module must stay import-light: no httpx, no publisher code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from . import counting

MB = 1_000_000
MiB = 1024 * 1024

_COMMON_IMAGES = frozenset({"JPEG", "PNG", "GIF", "WEBP"})


@dataclasses.dataclass(frozen=True, slots=True)
class TextLimit:
    unit: str
    count: Callable[[str], int]
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class Measure:
    """One count of a text against one limit, e.g. 312 of 300 graphemes."""

    count: int
    limit: int | None
    unit: str

    @property
    def over(self) -> bool:
        return self.limit is not None and self.count > self.limit

    def __str__(self) -> str:
        if self.limit is None:
            return f"{self.count} {self.unit}"
        return f"{self.count}/{self.limit} {self.unit}"


@dataclasses.dataclass(frozen=True, slots=True)
class Platform:
    name: str
    label: str
    text_limits: tuple[TextLimit, ...]
    max_image_bytes: int | None
    image_formats: frozenset[str] | None = _COMMON_IMAGES  # None: any image Pillow knows
    image_files: bool = True  # can upload an image file (else only show one by URL)
    max_alt: int | None = None
    # The publisher re-encodes an image over max_image_bytes or in another format to fit
    # (a warning in validate and preview) instead of refusing it.
    fits_images: bool = False
    # The client must build a link's preview card itself (fetching the page when publishing).
    builds_link_cards: bool = False

    def measure(
        self, text: str, max_characters: int | None = None, url_length: int | None = None
    ) -> list[Measure]:
        """Count ``text`` against every limit of this platform.

        ``max_characters`` replaces the first limit (an account's own, e.g. a Mastodon
        instance allowing 1000); ``url_length`` is Mastodon's ``characters_reserved_per_url``.
        """
        if not self.text_limits:
            return [Measure(counting.graphemes(text), max_characters, "characters")]
        measures = []
        for i, tl in enumerate(self.text_limits):
            limit = max_characters if (i == 0 and max_characters is not None) else tl.limit
            if url_length is not None and tl.count is counting.mastodon_length:
                count = counting.mastodon_length(text, url_length)
            else:
                count = tl.count(text)
            measures.append(Measure(count, limit, tl.unit))
        return measures


PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        # The embedded default: writes files, so it has no limits of its own unless the
        # account sets max_characters.
        Platform("outbox", "Outbox", (), max_image_bytes=None, image_formats=None),
        Platform(
            "mastodon",
            "Mastodon",
            (TextLimit("characters (URLs count 23)", counting.mastodon_length, 500),),
            max_image_bytes=16 * MB,
            image_formats=_COMMON_IMAGES | {"HEIF", "AVIF"},
            max_alt=1500,
        ),
        Platform(
            "bluesky",
            "Bluesky",
            (
                TextLimit("graphemes", counting.graphemes, 300),
                TextLimit("UTF-8 bytes", counting.utf8_bytes, 3000),
            ),
            # The lexicon allows 2,000,000 but the reference PDS still refuses image blobs
            # over 1,000,000 bytes: keep to what every server takes.
            max_image_bytes=1 * MB,
            image_formats=frozenset({"JPEG", "PNG", "GIF", "WEBP"}),
            fits_images=True,
            builds_link_cards=True,
        ),
        Platform(
            "x",
            "X",
            (TextLimit("weighted characters", counting.x_weighted_length, 280),),
            max_image_bytes=5 * MB,
            max_alt=1000,
        ),
        Platform(
            "telegram",
            "Telegram",
            (TextLimit("characters (UTF-16)", counting.utf16_units, 4096),),
            max_image_bytes=10 * MB,
            image_formats=frozenset({"JPEG", "PNG", "GIF", "WEBP"}),
        ),
        Platform(
            "discord",
            "Discord",
            (TextLimit("characters", counting.code_points, 2000),),
            max_image_bytes=10 * MiB,
            max_alt=1024,
        ),
        Platform(
            "slack",
            "Slack",
            (TextLimit("characters", counting.code_points, 3000),),
            max_image_bytes=None,
            image_files=False,  # incoming webhooks cannot upload; image blocks need a public URL
        ),
        Platform("webhook", "Webhook", (), max_image_bytes=None, image_formats=None),
    )
}


def get_platform(name: str) -> Platform:
    return PLATFORMS[name]
