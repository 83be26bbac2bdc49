"""Fetching an address a post names: an image by URL, an article for its link card.

A post file decides which URL is fetched, and the daemon often runs inside an organisation's
network, so every such fetch goes through this one fence: http(s) only; the host resolved
once, every address it resolves to checked, and the connection made to the checked address
(pinned: a name that re-resolves to 127.0.0.1 between the check and the connection cannot
get in, and a refused address is never contacted); no private, loopback or link-local
address unless ``link_cards.allow_private_addresses`` is set; at most five redirects, each
checked the same way; one deadline for the whole fetch (a server dripping a byte at a time
cannot hold a publish) and a size cap while streaming. Failures say what was refused, not
how a port answered, so the messages reveal nothing about the inside of the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import FetchError
from ..posts.models import is_global_ip

if TYPE_CHECKING:
    import httpx

MAX_REDIRECTS = 5
# Sites often refuse a bare HTTP library's agent; say what this is, as link-preview bots do.
USER_AGENT = f"Mozilla/5.0 (compatible; postscheduler/{__version__}; link preview)"


@dataclasses.dataclass(frozen=True, slots=True)
class Fence:
    max_bytes: int
    timeout: float  # seconds for the whole fetch, redirects included
    allow_private: bool = False
    # A body over max_bytes is cut there (an HTML head is near the top) instead of refused.
    truncate: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    body: bytes


def address_allowed(address: str, allow_private: bool) -> bool:
    return allow_private or is_global_ip(address) is True


async def _checked_address(url: httpx.URL, allow_private: bool) -> str:
    """The address to connect to for ``url``: every address its host resolves to must pass."""
    if url.scheme not in ("http", "https"):
        raise FetchError(f"{url} is not an http(s) address")
    host = url.host
    if not host:
        raise FetchError(f"{url} has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(
            f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not address_allowed(address, allow_private):
            raise FetchError(
                f"{host} resolves to {address}, a private or local address "
                "(set link_cards.allow_private_addresses to fetch it)"
            )
    if not addresses:
        raise FetchError(f"cannot resolve {host}")
    return addresses[0]


def _parse(url: str) -> httpx.URL:
    import httpx

    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise FetchError(f"{url!r} is not a usable address ({exc})") from None


async def fetch(
    http: httpx.AsyncClient, url: str, fence: Fence, *, accept: tuple[str, ...]
) -> Fetched:
    """GET ``url`` within ``fence``; ``accept`` lists the content types wanted (``image/*``)."""
    try:
        async with asyncio.timeout(fence.timeout):
            return await _fetch(http, url, fence, accept)
    except TimeoutError:
        raise FetchError(
            f"{url} did not answer within {fence.timeout:g} s", transient=True
        ) from None


async def _fetch(
    http: httpx.AsyncClient, url: str, fence: Fence, accept: tuple[str, ...]
) -> Fetched:
    import httpx

    current = _parse(url)
    for _ in range(MAX_REDIRECTS + 1):
        address = await _checked_address(current, fence.allow_private)
        pinned = current.copy_with(host=address)
        host_header = current.netloc.decode("ascii")
        extensions = {"sni_hostname": current.host} if current.scheme == "https" else {}
        headers = {"Accept": ", ".join(accept), "User-Agent": USER_AGENT, "Host": host_header}
        try:
            request = http.build_request(
                "GET", pinned, headers=headers, extensions=extensions, timeout=fence.timeout
            )
            response = await http.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise FetchError(f"cannot connect to {current.host}", transient=True) from None
        except httpx.HTTPError:
            raise FetchError(
                f"cannot fetch {current}: the connection failed", transient=True
            ) from None
        try:
            if response.is_redirect and "location" in response.headers:
                current = current.join(_parse(response.headers["location"]))
                continue
            status = response.status_code
            if not 200 <= status < 300:
                raise FetchError(
                    f"{current} answered {status}", transient=status == 429 or status >= 500
                )
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not any(kind.startswith(a.rstrip("*")) for a in accept):
                raise FetchError(f"{current} is {kind or 'of no type'}, not {accept[0]}")
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > fence.max_bytes:
                        if not fence.truncate:
                            raise FetchError(f"{current} is over {fence.max_bytes:,} bytes")
                        del body[fence.max_bytes :]
                        break
            except httpx.HTTPError:
                raise FetchError(
                    f"cannot fetch {current}: the connection failed", transient=True
                ) from None
            return Fetched(str(current), response.headers.get("content-type", ""), bytes(body))
        finally:
            await response.aclose()
    raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times")
