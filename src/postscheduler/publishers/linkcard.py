"""Link cards: a page's OpenGraph title, description and image, fetched within bounds.

Platforms that build no card themselves (Bluesky) need the client to read the article. A
post file decides which URL is fetched, and the daemon often runs inside an organisation's
network, so fetching is fenced: http(s) only, a time limit, a size limit, at most five
redirects, and no private, loopback or link-local address (checked on the address actually
connected to, so a name that re-resolves to 127.0.0.1 between check and connect is caught
too) unless ``link_cards.allow_private_addresses`` is set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import urllib.parse
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from .. import __version__
from ..config import LinkCards
from ..errors import CardError

if TYPE_CHECKING:
    import httpx

MAX_REDIRECTS = 5
# Sites often refuse a bare HTTP library's agent; say what this is, as link-preview bots do.
USER_AGENT = f"Mozilla/5.0 (compatible; postscheduler/{__version__}; link preview)"


@dataclasses.dataclass(frozen=True, slots=True)
class Card:
    url: str  # the link as written in the post
    title: str
    description: str
    image_url: str | None  # absolute


def _address_allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return allow_private or ip.is_global


async def _check_host(url: httpx.URL, allow_private: bool) -> None:
    if url.scheme not in ("http", "https"):
        raise CardError(f"{url} is not an http(s) address")
    host = url.host
    if not host:
        raise CardError(f"{url} has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError as exc:
        raise CardError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    for info in infos:
        address = str(info[4][0])
        if not _address_allowed(address, allow_private):
            raise CardError(
                f"{host} resolves to {address}, a private or local address "
                "(set link_cards.allow_private_addresses to fetch it)"
            )


async def fetch(
    http: httpx.AsyncClient, url: str, settings: LinkCards, *, accept: tuple[str, ...]
) -> tuple[str, str, bytes]:
    """GET ``url`` within the fences; returns (final URL, content type, body).

    A body over ``max_bytes`` is cut there (an HTML head is near the top) unless it is an
    image, which must be whole.
    """
    import httpx

    current = httpx.URL(url)
    timeout = settings.timeout.total_seconds()
    for _ in range(MAX_REDIRECTS + 1):
        await _check_host(current, settings.allow_private_addresses)
        try:
            async with asyncio.timeout(timeout):
                async with http.stream(
                    "GET",
                    current,
                    follow_redirects=False,
                    timeout=timeout,
                    headers={"Accept": ", ".join(accept), "User-Agent": USER_AGENT},
                ) as response:
                    stream = response.extensions.get("network_stream")
                    peer = stream.get_extra_info("server_addr") if stream is not None else None
                    if peer and not _address_allowed(
                        str(peer[0]), settings.allow_private_addresses
                    ):
                        raise CardError(f"{current.host} connected to a private address")
                    if response.is_redirect and "location" in response.headers:
                        current = current.join(response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise CardError(f"{current} answered {response.status_code}")
                    kind = response.headers.get("content-type", "").split(";")[0].strip()
                    if not any(kind.startswith(a.rstrip("*")) for a in accept):
                        raise CardError(f"{current} is {kind or 'of no type'}, not {accept[0]}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > settings.max_bytes:
                            if kind.startswith("image/"):
                                raise CardError(f"{current} is over {settings.max_bytes:,} bytes")
                            del body[settings.max_bytes :]
                            break
                    return str(current), response.headers.get("content-type", ""), bytes(body)
        except TimeoutError:
            raise CardError(f"{current} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise CardError(f"cannot fetch {current}: {type(exc).__name__}") from None
    raise CardError(f"{url} redirects more than {MAX_REDIRECTS} times")


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
    page_url, content_type, body = await fetch(
        http, url, settings, accept=("text/html", "application/xhtml+xml")
    )
    charset = "utf-8"
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        html = body.decode(charset, errors="replace")
    except LookupError:
        html = body.decode("utf-8", errors="replace")
    return parse_card(url, page_url, html)
