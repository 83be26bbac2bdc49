"""Mastodon: 500 characters by default (an instance may allow more), counted as
``StatusLengthValidator`` does: graphemes, after every http(s) URL is replaced by 23
characters (the instance's ``characters_reserved_per_url``) and every remote mention
``@user@domain`` by ``@user``. Images up to 16 MB unless the instance says less; alt text up
to 1,500 characters.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from . import counting
from .base import COMMON_IMAGES, MB, AccountConfig, HttpUrl, Platform, Secret, TextLimit

if TYPE_CHECKING:
    import regex

URL_LENGTH = 23


class MastodonAccount(AccountConfig):
    platform: Literal["mastodon"]
    instance: HttpUrl
    token: Secret
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    language: str | None = None
    characters_reserved_per_url: int = URL_LENGTH
    max_image_bytes: int | None = Field(
        default=None, gt=0, description="The instance's image size limit, if not 16 MB."
    )


@functools.cache
def _mention_re() -> regex.Pattern[str]:
    import regex

    # Mastodon's Account::MENTION_RE: only the username part of a remote mention counts.
    return regex.compile(
        r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@[\w.-]+\w+)?", regex.IGNORECASE
    )


def mastodon_length(text: str, url_length: int = URL_LENGTH) -> int:
    """Length of a status as Mastodon counts it against ``max_characters``."""
    if not text:
        return 0
    spans: list[tuple[int, int, str]] = [
        (start, end, "x" * url_length) for start, end, _ in counting.url_spans(text)
    ]
    for m in _mention_re().finditer(text):
        if not any(start <= m.start() < end for start, end, _ in spans):
            spans.append((m.start(), m.end(), "@" + m[1]))
    spans.sort()
    pieces: list[str] = []
    pos = 0
    for start, end, replacement in spans:
        pieces.append(text[pos:start])
        pieces.append(replacement)
        pos = end
    pieces.append(text[pos:])
    return counting.graphemes("".join(pieces))


class Mastodon(Platform):
    def count(self, limit: TextLimit, text: str, account: AccountConfig | None) -> int:
        if isinstance(account, MastodonAccount):
            return mastodon_length(text, account.characters_reserved_per_url)
        return limit.count(text)

    def image_limit(self, account: AccountConfig | None = None) -> int | None:
        if isinstance(account, MastodonAccount) and account.max_image_bytes:
            return account.max_image_bytes  # the instance's own (validate --online)
        return self.max_image_bytes


PLATFORM = Mastodon(
    "mastodon",
    "Mastodon",
    MastodonAccount,
    "MastodonPublisher",
    (TextLimit("characters (URLs count 23)", mastodon_length, 500),),
    max_image_bytes=16 * MB,
    image_formats=COMMON_IMAGES | {"HEIF", "AVIF"},
    max_alt=1500,
    content_warnings=True,  # spoiler_text
)
