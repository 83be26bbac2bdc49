"""Threads (Meta's Threads API): 500 characters a post, where Threads counts an emoji as the
number of bytes it takes in UTF-8 (so "✊🏽" is 7), at most 5 distinct links; images JPEG or
PNG up to 8 MB, fetched by Threads from a public URL (``image.url``, or a file served under
``media_url``), alt text on images. Thread parts are real replies (``reply_to_id``).

Long-lived tokens last 60 days; the publisher refreshes them and keeps the newest.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

from . import counting
from .base import MB, AccountConfig, HttpUrl, Platform, Problem, Secret, TextLimit

if TYPE_CHECKING:
    import regex

MAX_LINKS = 5


class ThreadsAccount(AccountConfig):
    platform: Literal["threads"]
    user_id: str
    token: Secret
    api_base: HttpUrl = "https://graph.threads.net/v1.0"


@functools.cache
def _emoji_re() -> regex.Pattern[str]:
    import regex

    # A cluster is an emoji when it holds a pictograph, a flag's regional indicators or a
    # keycap; its modifiers and joiners are part of it, and so of its byte count.
    return regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3")


@functools.cache
def _cluster_re() -> regex.Pattern[str]:
    import regex

    return regex.compile(r"\X")


def threads_length(text: str) -> int:
    """Length as Threads counts it: one per character, an emoji its UTF-8 bytes."""
    if text.isascii():
        return counting.graphemes(text)
    emoji = _emoji_re()
    total = 0
    for cluster in _cluster_re().findall(text):
        total += len(cluster.encode("utf-8")) if emoji.search(cluster) else 1
    return total


class Threads(Platform):
    def text_problems(self, text: str) -> list[Problem]:
        links = {url for _, _, url in counting.url_spans(text)}
        if len(links) <= MAX_LINKS:
            return []
        return [
            Problem(
                "too-many-links",
                f"{len(links)} different links, over Threads' {MAX_LINKS}",
                "keep the link that matters; Threads refuses the post "
                "(THREADS_API__LINK_LIMIT_EXCEEDED)",
            )
        ]


PLATFORM = Threads(
    "threads",
    "Threads",
    ThreadsAccount,
    "ThreadsPublisher",
    (TextLimit("characters (an emoji counts its UTF-8 bytes)", threads_length, 500),),
    max_image_bytes=8 * MB,
    image_formats=frozenset({"JPEG", "PNG"}),
    pulls_images=True,
)
