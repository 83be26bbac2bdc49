"""Link cards: OpenGraph parsing, and the fences around fetching a page a post names."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest

from postscheduler.config import LinkCards
from postscheduler.errors import CardError, FetchError
from postscheduler.publishers.fetch import fetch
from postscheduler.publishers.linkcard import Card, card_fence, fetch_card, parse_card

LOOPBACK_OK = LinkCards(allow_private_addresses=True, timeout="2s", max_bytes=50_000)


class _Site(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    agents: ClassVar[list[str]] = []
    # /slow answers only once the test is over: a page that never comes in time.
    released: ClassVar[threading.Event] = threading.Event()

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.agents.append(self.headers.get("User-Agent", ""))
        if self.path.startswith("/hop/"):
            n = int(self.path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"/hop/{n + 1}" if n < 9 else "/page")
            self.end_headers()
            return
        if self.path == "/slow":
            self.released.wait(timeout=30)
        body, kind = {
            "/page": (
                b"<html><head><title>A page</title></head><body>x</body></html>",
                "text/html",
            ),
            "/big": (b"<html><head><title>Big</title></head>" + b" " * 200_000, "text/html"),
            "/big.jpg": (b"\xff" * 200_000, "image/jpeg"),
            "/file.pdf": (b"%PDF-1.4", "application/pdf"),
            "/to-page": (b"", "text/html"),
            "/idna": (b"<title>Odd charset</title>", "text/html; charset=idna"),
        }.get(self.path, (b"<title>Slow</title>", "text/html"))
        if self.path == "/to-page":
            self.send_response(301)
            self.send_header("Location", "/page")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Site.released.set()
    server.shutdown()
    server.server_close()


def _card(url: str, settings: LinkCards = LOOPBACK_OK) -> Card:
    async def go() -> Card:
        async with httpx.AsyncClient() as http:
            return await fetch_card(http, url, settings)

    return asyncio.run(go())


def _get(
    url: str, settings: LinkCards = LOOPBACK_OK, accept: tuple[str, ...] = ("image/*",)
) -> bytes:
    async def go() -> bytes:
        async with httpx.AsyncClient() as http:
            try:
                return (await fetch(http, url, card_fence(settings), accept=accept)).body
            except FetchError as exc:
                raise CardError(str(exc)) from None

    return asyncio.run(go())


def test_opengraph_first_then_twitter_then_title() -> None:
    html = (
        "<html><head><title>Fallback</title>"
        '<meta name="twitter:title" content="Twitter title">'
        '<meta property="og:title" content="Peru &amp; democracy">'
        '<meta name="description" content="  Plain\n description ">'
        '<meta property="og:image" content="../img/card.jpg">'
        "</head><body><meta property='og:title' content='in the body'></body></html>"
    )
    card = parse_card("https://example.org/a/b", "https://example.org/a/b", html)
    assert card == Card(
        "https://example.org/a/b",
        "Peru & democracy",
        "Plain description",
        "https://example.org/img/card.jpg",
    )
    bare = parse_card("u", "https://example.org/", "<title> Only a title </title>")
    assert (bare.title, bare.description, bare.image_url) == ("Only a title", "", None)
    with pytest.raises(CardError, match="no title"):
        parse_card("u", "https://example.org/", "<p>nothing</p>")
    odd = parse_card(
        "u", "https://e.org/", '<title>t</title><meta property="og:image" content="javascript:x">'
    )
    assert odd.image_url is None


def test_loopback_is_refused_unless_allowed(site: str) -> None:
    _Site.hits.clear()
    for url in (f"{site}/page", "http://[::ffff:127.0.0.1]:9/page", "http://10.1.2.3/page"):
        with pytest.raises(CardError, match="private or local address"):
            _card(url, LinkCards())
    assert _Site.hits == []  # refused before connecting
    assert _card(f"{site}/page").title == "A page"
    assert "postscheduler/" in _Site.agents[-1]  # says what it is


def test_only_http_and_https(site: str) -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/"):
        with pytest.raises(CardError, match="not an http"):
            _card(url)


def test_redirects_are_followed_and_bounded(site: str) -> None:
    assert _card(f"{site}/to-page").title == "A page"
    with pytest.raises(CardError, match="redirects more than 5 times"):
        _card(f"{site}/hop/0")


def test_size_time_and_type_limits(site: str) -> None:
    assert _card(f"{site}/big").title == "Big"  # a long page is cut; its head is enough
    with pytest.raises(CardError, match="over 50,000 bytes"):
        _get(f"{site}/big.jpg")  # an image must be whole
    with pytest.raises(CardError, match="application/pdf"):
        _card(f"{site}/file.pdf")
    impatient = LOOPBACK_OK.model_copy(update={"timeout": dt.timedelta(milliseconds=300)})
    with pytest.raises(CardError, match=r"did not answer within 0\.3 s"):
        _card(f"{site}/slow", impatient)  # it answers only when the tests are done


def test_a_page_in_a_codec_that_raises_still_gives_its_card(site: str) -> None:
    assert _card(f"{site}/idna").title == "Odd charset"  # read as UTF-8, not a UnicodeError
