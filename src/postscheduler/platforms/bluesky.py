"""Bluesky: 300 graphemes and 3,000 UTF-8 bytes (the lexicon limits both), images up to
1,000,000 bytes (re-encoded to fit by the publisher), and rich text the client must mark.

Bluesky does not read the text for links, mentions and hashtags: the client sends *facets*,
byte ranges of the UTF-8 text with what each range means. This finds them the way Bluesky's
own client does (``detectFacets`` of ``@atproto/api``, checked against its test vectors), and
shortens links for display as the app does: the text shows ``example.org/2023/01/peru-s...``,
the facet holds the whole URL, and only the short form counts toward the 300 graphemes.
``display`` does it in render, so preview and validate see exactly the text that is published.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from . import counting
from .base import MB, AccountConfig, HttpUrl, LinkSpan, Platform, Secret, TextLimit

FACET = "app.bsky.richtext.facet"
_MAYBE_LINK = re.compile(r"[a-z0-9]\.[a-z0-9]", re.IGNORECASE)

_URL = (
    r"(?P<lead>^|\s|\()(?P<url>(?:https?://\S+)"
    r"|(?:(?P<domain>[a-z][a-z0-9]*(?:\.[a-z0-9]+)+)\S*))"
)
_MENTION = r"(?P<lead>^|\s|\()@(?P<handle>[a-zA-Z0-9.-]*[a-zA-Z0-9])(?![a-zA-Z0-9_])"
_INVISIBLE = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2"
_TAG = (
    rf"(?P<lead>^|\s)[#＃](?P<tag>(?!\ufe0f)[^\s{_INVISIBLE}]*"
    rf"[^\d\s\p{{P}}{_INVISIBLE}]+[^\s{_INVISIBLE}]*)?"
)
_CASHTAG = r"(?P<lead>^|\s|\()\$(?P<tag>[A-Za-z][A-Za-z0-9]{0,4})(?=$|\s|\p{P})"
_HANDLE = (
    r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)


class _Patterns:
    """Compiled on first use: only Bluesky accounts need them."""

    def __init__(self) -> None:
        import regex

        # The stdlib engine is twice as fast on this one, which render runs on every text.
        self.url = re.compile(_URL, re.IGNORECASE | re.MULTILINE)
        self.mention = regex.compile(_MENTION)
        self.tag = regex.compile(_TAG)
        self.cashtag = regex.compile(_CASHTAG)
        self.trailing_punct = regex.compile(r"\p{P}+$")
        self.handle = regex.compile(_HANDLE)


@functools.cache
def _compiled() -> _Patterns:
    return _Patterns()


def _is_tld(label: str) -> bool:
    from tld import is_tld

    return bool(is_tld(label.lower()))


def _valid_domain(domain: str) -> bool:
    return "." in domain and _is_tld(domain.rsplit(".", 1)[1])


def _facet(text: str, start: int, end: int, feature: dict[str, str]) -> dict[str, Any]:
    byte_start = len(text[:start].encode())
    byte_end = byte_start + len(text[start:end].encode())
    return {"index": {"byteStart": byte_start, "byteEnd": byte_end}, "features": [feature]}


def iter_links(text: str) -> Iterator[tuple[int, int, str]]:
    """Links in ``text`` as Bluesky's client finds them: (start, end) in characters, and the
    URI (``https://`` added to a bare domain, trailing punctuation left out)."""
    if not _MAYBE_LINK.search(text):  # most texts: no dot between letters, so no link
        return
    for m in _compiled().url.finditer(text):
        uri = m["url"]
        start, end = m.start("url"), m.end("url")
        if not uri.lower().startswith("http"):
            if not m["domain"] or not _valid_domain(m["domain"]):
                continue
            uri = f"https://{uri}"
        if uri[-1] in ".,;:!?":
            uri, end = uri[:-1], end - 1
        if uri.endswith(")") and "(" not in uri:
            uri, end = uri[:-1], end - 1
        yield start, end, uri


def detect_facets(text: str, *, links: bool = True) -> list[dict[str, Any]]:
    """Facets for ``text`` as Bluesky's client makes them, sorted by offset.

    A mention's feature has ``handle`` in place of ``did`` until it is resolved. ``links``:
    False when the links' facets are known already (``display_links``).
    """
    p = _compiled()
    facets = []
    for m in p.mention.finditer(text):
        handle = m["handle"]
        if not p.handle.fullmatch(handle):
            continue
        if not (_valid_domain(handle) or handle.lower().endswith(".test")):
            continue
        facets.append(
            _facet(
                text,
                m.start("handle") - 1,
                m.end("handle"),
                {"$type": f"{FACET}#mention", "handle": handle.lower()},
            )
        )
    if links:
        for start, end, uri in iter_links(text):
            facets.append(_facet(text, start, end, {"$type": f"{FACET}#link", "uri": uri}))
    for m in p.tag.finditer(text):
        tag = m["tag"]
        if not tag:
            continue
        tag = p.trailing_punct.sub("", tag.strip())
        if not tag or len(tag.encode("utf-16-le")) // 2 > 64:
            continue
        start = m.start() + len(m["lead"])
        facets.append(
            _facet(
                text,
                start,
                start + 1 + len(tag),
                {"$type": f"{FACET}#tag", "tag": tag},
            )
        )
    for m in p.cashtag.finditer(text):
        start = m.start() + len(m["lead"])
        tag = "$" + m["tag"].upper()
        facets.append(_facet(text, start, m.end("tag"), {"$type": f"{FACET}#tag", "tag": tag}))
    facets.sort(key=lambda f: f["index"]["byteStart"])
    return facets


def short_url(url: str) -> str:
    """How Bluesky's app shows a link: no scheme, and a long path cut to 13 characters."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return url
    path = "" if parts.path == "/" else parts.path
    if parts.query:
        path += f"?{parts.query}"
    if parts.fragment:
        path += f"#{parts.fragment}"
    host = parts.netloc.rpartition("@")[2]
    return host + (path if len(path) <= 15 else path[:13] + "...")


def display_links(text: str, *, shorten: bool) -> tuple[str, tuple[LinkSpan, ...]]:
    """``text`` with its links shown short (if ``shorten``), and where each link now is."""
    pieces: list[str] = []
    spans: list[LinkSpan] = []
    cursor = size = 0
    for start, end, uri in iter_links(text):
        before = text[cursor:start]
        shown = short_url(uri) if shorten else text[start:end]
        size += len(before.encode())
        spans.append((size, size + len(shown.encode()), uri))
        size += len(shown.encode())
        pieces += (before, shown)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces), tuple(spans)


class BlueskyAccount(AccountConfig):
    platform: Literal["bluesky"]
    service: HttpUrl = "https://bsky.social"
    handle: str
    app_password: Secret
    language: str | None = None
    shorten_links: bool = Field(
        default=True,
        description="Show links as Bluesky's app does (example.org/2023/01/peru-s...); "
        "the link still leads to the whole URL.",
    )


class Bluesky(Platform):
    def display(
        self, text: str, account: AccountConfig | None = None
    ) -> tuple[str, tuple[LinkSpan, ...] | None]:
        shorten = account.shorten_links if isinstance(account, BlueskyAccount) else True
        return display_links(text, shorten=shorten)


PLATFORM = Bluesky(
    "bluesky",
    "Bluesky",
    BlueskyAccount,
    "BlueskyPublisher",
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
)
