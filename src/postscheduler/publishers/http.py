"""What every HTTP publisher shares: classifying failures the same way on every platform."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ..errors import OutcomeUnknownError, PermanentError, TransientError

# Failures before the request left this machine: nothing can have been published.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# Failures after it may have arrived: the platform may have acted on it.
_MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


MAX_CONNECTIONS = 600
# How many clients the publishers' connections are spread over (see Clients).
SHARDS = 16


def new_client(
    read: float,
    connect: float,
    *,
    max_connections: int = MAX_CONNECTIONS,
    verify: Any = True,
) -> httpx.AsyncClient:
    """A client as publishers use it: no redirects followed (a platform's answer is read
    as it is), and the timeouts the caller chose: ``connect``, a refused or slow connection
    is retried; ``read``, a platform that takes longer has it in hand."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read, connect=connect),
        # Every account due at one instant gets its connection at once: past the limit,
        # requests queue in httpcore, whose queue costs grow with its square (500 accounts
        # at once took 16 s with httpx's default of 100, bench/daemon_bench.py fanout).
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max(8, max_connections // 6),
        ),
        headers={"User-Agent": "postscheduler"},
        follow_redirects=False,
        verify=verify,
    )


class Clients:
    """The engine's HTTP clients: account number ``i`` (in the configuration's order) uses
    client ``i % SHARDS``.

    httpcore's pool looks at every connection it holds on each request and on each answer
    (and polls the socket of each idle one), so one pool serving 500 accounts at one instant
    does 500 x 500 of those checks; sixteen pools of about 31 do a sixteenth of that. The
    accounts are dealt round-robin rather than hashed, so the pools are even and the
    ``MAX_CONNECTIONS`` in total (below the usual 1,024 open files a process may have)
    give each account its own connection up to 16 x 37 accounts. Accounts of one instance
    dealt to one client share its connections. One TLS context (its CA bundle read once)
    serves them all.
    """

    def __init__(self, read: float, connect: float, shards: int = SHARDS) -> None:
        self.read, self.connect, self.shards = read, connect, shards
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._tls: Any = None

    def client(self, index: int) -> httpx.AsyncClient:
        shard = index % self.shards
        if shard not in self._clients:
            if self._tls is None:
                self._tls = httpx.create_ssl_context()
            self._clients[shard] = new_client(
                self.read,
                self.connect,
                max_connections=MAX_CONNECTIONS // self.shards,
                verify=self._tls,
            )
        return self._clients[shard]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    seconds = number(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def epoch_reset(header: str) -> Callable[[httpx.Response], float | None]:
    """A retry hint read from ``header`` holding the Unix time the limit resets (X, the
    Bluesky PDS), else from ``Retry-After``."""

    def retry_after(response: httpx.Response) -> float | None:
        reset = number(response.headers.get(header))
        if reset is not None:
            return max(reset - time.time(), 0.0)
        return retry_after_seconds(response)

    return retry_after


def error_body(response: httpx.Response) -> dict[str, Any]:
    """An error answer's JSON object, or {} when the body is not one (a proxy's HTML page, a
    JSON list or string): readers of error bodies use this, never ``response.json()``."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def answer_object(response: httpx.Response, label: str) -> dict[str, Any]:
    """A successful answer's JSON object. A 2xx whose body is not one (a proxy's page, a
    body cut short, a list where an object is documented) may still mean the platform
    acted on the request: the outcome is unknown, and the recovery finds out."""
    body: dict[str, Any] = _documented(response, label, dict, "object")
    return body


def _documented(response: httpx.Response, label: str, kind: type, what: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, kind):
        raise OutcomeUnknownError(
            f"{label}: {response.status_code} with an answer that is not the JSON {what} the "
            f"API documents ({body_excerpt(response, 120) or 'an empty body'})"
        )
    return body


def answer_field(answer: Any, key: str, label: str) -> str:
    """``answer[key]``: the id or address an API documents there, as a non-empty string
    (a number is taken as its digits). Missing or of another kind, the platform may still
    have acted: OutcomeUnknownError."""
    value = answer.get(key) if isinstance(answer, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise OutcomeUnknownError(f"{label}: the answer has no {key!r} the API documents")
    return value


def answer_url(answer: Any, key: str) -> str | None:
    """``answer[key]`` when it is a web address as documented, else None: a post's link is
    shown to people, never needed to know it was published."""
    value = answer.get(key) if isinstance(answer, dict) else None
    if isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) < 2048:
        return value
    return None


def answer_list(response: httpx.Response, label: str) -> list[dict[str, Any]]:
    """The JSON objects of a successful answer documented as a list (others in it skipped)."""
    return [item for item in _documented(response, label, list, "list") if isinstance(item, dict)]


def number(value: Any) -> float | None:
    """A finite number from a body (a retry hint, a count), or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        result = float(value)
    except (ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def body_excerpt(response: httpx.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


async def send(
    label: str,
    request: Callable[[], Awaitable[httpx.Response]],
    *,
    error_text: Callable[[httpx.Response], str] = body_excerpt,
    retry_after: Callable[[httpx.Response], float | None] = retry_after_seconds,
    transient: Callable[[httpx.Response], bool] | None = None,
) -> httpx.Response:
    """Make one request and map its failure to the publisher contract's exceptions.

    2xx is returned; 429 and 5xx are transient (with the platform's retry hint), and so is
    any answer ``transient`` says is (the Graph API throttles with 400 and an error code);
    any other status is permanent, with the platform's own message.
    """
    try:
        response = await request()
    except _NOT_SENT as exc:
        raise TransientError(f"{label}: could not connect ({type(exc).__name__})") from None
    except _MAYBE_SENT as exc:
        raise OutcomeUnknownError(
            f"{label}: the connection failed after the request was sent ({type(exc).__name__})"
        ) from None
    except httpx.HTTPError as exc:
        raise OutcomeUnknownError(f"{label}: {type(exc).__name__}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    try:
        words = error_text(response)
    except Exception:  # a platform's reader must never turn a refusal into an unknown outcome
        words = body_excerpt(response)
    message = f"{label}: {status} {words}".rstrip()
    try:
        throttled = transient is not None and transient(response)
    except Exception:  # an unreadable body says nothing more than its status
        throttled = False
    if status == 429 or status >= 500 or throttled:
        try:
            hint = retry_after(response)
        except Exception:  # an unreadable hint is no hint
            hint = None
        raise TransientError(message, retry_after=hint)
    raise PermanentError(message, status)
