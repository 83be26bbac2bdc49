"""Link cards: a page's OpenGraph title, description and image, fetched within bounds.

Platforms that build no card themselves (Bluesky) need the client to read the article. The
page and its image are fetched through the one fence for addresses a post names
(``fetch.py``), bounded by the ``link_cards:`` section of ``scheduler.yaml``; any problem
means the post goes out without a card (``CardError``).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from ..config import LinkCards
from ..errors import CardError, FetchError
from .fetch import Fence, fetch

if TYPE_CHECKING:
    import httpx


@dataclasses.dataclass(frozen=True, slots=True)
class Card:
    url: str  # the link as written in the post
    title: str
    description: str
    image_url: str | None  # absolute


def card_fence(settings: LinkCards) -> Fence:
    return Fence(
        max_bytes=settings.max_bytes,
        timeout=settings.timeout.total_seconds(),
        allow_private=settings.allow_private_addresses,
    )


async def fetch_image(http: httpx.AsyncClient, url: str, settings: LinkCards) -> bytes:
    """A card's image, whole (an image cut short is no image)."""
    try:
        return (await fetch(http, url, card_fence(settings), accept=("image/*",))).body
    except FetchError as exc:
        raise CardError(str(exc)) from None


class _HeadParser(HTMLParser):
    """Collects <meta property|name=... content=...> and <title> until the body starts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title = ""
        self._in_title = False
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            values = {k.lower(): v for k, v in attrs if v is not None}
            key = (values.get("property") or values.get("name") or "").lower()
            if key and "content" in values:
                self.meta.setdefault(key, values["content"].strip())
        elif tag == "title":
            self._in_title = True
        elif tag == "body":
            self.done = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "head":
            self.done = True

    def handle_data(self, data: str) -> None:
        if self._in_title and not self.done:
            self.title += data


def parse_card(url: str, page_url: str, html: str) -> Card:
    """The card of an HTML page: OpenGraph first, then Twitter tags, then <title>."""
    parser = _HeadParser()
    for start in range(0, len(html), 65536):
        parser.feed(html[start : start + 65536])
        if parser.done:
            break
    meta = parser.meta

    def first(*keys: str) -> str:
        for key in keys:
            if meta.get(key):
                return " ".join(meta[key].split())
        return ""

    title = first("og:title", "twitter:title") or " ".join(parser.title.split())
    description = first("og:description", "twitter:description", "description")
    image = first("og:image:secure_url", "og:image", "og:image:url", "twitter:image")
    image_url = urllib.parse.urljoin(page_url, image) if image else None
    if image_url and urllib.parse.urlsplit(image_url).scheme not in ("http", "https"):
        image_url = None
    if not title:
        raise CardError(f"{url} has no title (no og:title or <title>)")
    return Card(url, title, description, image_url)


async def fetch_card(http: httpx.AsyncClient, url: str, settings: LinkCards) -> Card:
    fence = dataclasses.replace(card_fence(settings), truncate=True)  # the head is enough
    try:
        page = await fetch(http, url, fence, accept=("text/html", "application/xhtml+xml"))
    except FetchError as exc:
        raise CardError(str(exc)) from None
    page_url, content_type, body = page.url, page.content_type, page.body
    charset = "utf-8"
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        html = body.decode(charset, errors="replace")
    except (LookupError, UnicodeError):  # an unknown charset, or a codec that still raises
        html = body.decode("utf-8", errors="replace")
    return parse_card(url, page_url, html)
