"""The one fence around fetching an address a post names (images by URL, link cards)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from postscheduler.errors import FetchError
from postscheduler.publishers.fetch import Fence, Fetched, fetch

LOOSE = Fence(max_bytes=10_000, timeout=2.0, allow_private=True)


class _Server(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []
    stop: ClassVar[threading.Event] = threading.Event()

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        if self.path == "/drip":  # headers at once, then a byte now and then, for ever
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            while not self.stop.wait(0.1):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
            return
        body = b"\xff\xd8\xff\xe0 a jpeg"
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1])
    _Server.stop.set()
    httpd.shutdown()
    httpd.server_close()


def _fetch(url: str, fence: Fence = LOOSE) -> Fetched:
    async def go() -> Fetched:
        async with httpx.AsyncClient() as http:
            return await fetch(http, url, fence, accept=("image/*",))

    return asyncio.run(go())


def test_private_addresses_are_refused_before_connecting(server: int) -> None:
    _Server.hosts.clear()
    strict = Fence(max_bytes=10_000, timeout=2.0)
    for url in (
        f"http://127.0.0.1:{server}/internal-only/secret.json",
        f"http://localhost:{server}/x.jpg",
        f"http://[::ffff:127.0.0.1]:{server}/x.jpg",
        "http://10.1.2.3/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
    ):
        with pytest.raises(FetchError, match="private or local address"):
            _fetch(url, strict)
    assert _Server.hosts == []


def test_the_connection_goes_to_the_address_that_was_checked(
    server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by the fence; the request is pinned to that address (a
    second resolution, which a rebinding DNS server could answer differently, never happens:
    this name resolves nowhere but in the fence)."""
    resolved: list[str] = []

    async def getaddrinfo(self: Any, host: str, port: int, **kwargs: Any) -> list[Any]:
        resolved.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    _Server.hosts.clear()
    got = _fetch(f"http://campaign-cdn.test:{server}/photo.jpg")
    assert got.body.startswith(b"\xff\xd8") and got.url.startswith("http://campaign-cdn.test")
    assert resolved == ["campaign-cdn.test"]
    assert _Server.hosts == [f"campaign-cdn.test:{server}"]  # the site sees its own name


def test_one_deadline_for_the_whole_download(server: int) -> None:
    """A server dripping a byte at a time cannot hold a publish past the deadline."""
    with pytest.raises(FetchError, match=r"did not answer within 0\.5 s") as info:
        _fetch(f"http://127.0.0.1:{server}/drip", Fence(10_000, 0.5, allow_private=True))
    assert info.value.transient  # without the deadline this fetch would never end


def test_unusable_addresses_are_refused_in_words(server: int) -> None:
    for url in ("file:///etc/passwd", "http://0177.0.0.1/", "http://[::1/", "ftp://x.org/a"):
        with pytest.raises(FetchError):
            _fetch(url)
    with pytest.raises(FetchError, match=r"cannot connect to 127\.0\.0\.1$"):
        _fetch("http://127.0.0.1:9/closed.jpg")  # says nothing of how the port answered
