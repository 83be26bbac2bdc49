"""The publisher contract: the one interface every platform implements.

A publisher turns one rendered part (``PublishJob``) into one remote post and keeps every
quirk of its platform inside its own module. The daemon relies on exactly this:

``platform``
    The platform name used in ``scheduler.yaml`` (``platform: outbox``). How text is counted
    and limited is declared in ``postscheduler.platforms`` under the same name, so ``validate``
    and ``preview`` know it without importing any publisher.

``idempotent``
    True when publishing the same job twice with the same ``identity`` creates one post
    (Mastodon's Idempotency-Key, Bluesky's record key, the outbox's file name). Only then is
    a publish whose outcome is unknown retried automatically; otherwise it ends
    ``unconfirmed`` and a person decides (``postscheduler resolve``).

``identity(key, now)``
    The client-chosen identity of a delivery, chosen when it is first claimed and written to
    the ledger before the first attempt; every later attempt and restart reuses the stored one.

``publish(job)``
    Publish and return ``Published(remote_id, url)``. Raise ``TransientError`` when nothing
    was published and trying later may work (timeouts before sending, connection refused,
    5xx, 429: give ``retry_after`` when the platform says), ``PermanentError`` when retrying
    cannot help (401, 403, 422: with the platform's own words), and ``OutcomeUnknownError``
    when the request may have been carried out (the connection dropped after it was sent).

``resolve_in_doubt(job)``
    After a crash, a delivery left ``sending``, or an unknown outcome of a publisher that is
    not idempotent: return ``Published`` if it is known to have gone out (found among the
    account's recent posts, or by the container ``job.progress`` names), ``NOT_SENT`` if it
    certainly did not (so it can be sent), or ``UNKNOWN``. The default: an idempotent
    publisher says ``NOT_SENT`` (resending is harmless), any other says ``UNKNOWN``.

``job.record(progress)``
    A publisher with several steps (Instagram: create a container, then publish it) keeps
    what it made before the step that publishes it; the next attempt of the delivery gets it
    back as ``job.progress``.

``credential_warnings(now)``
    What ``accounts check`` and the daemon's start-up say about credentials that will stop
    working (a token that expires within two weeks, with the date). By default nothing.

``limits_source``, ``fetch_limits()``, ``with_limits(limits)``
    For ``validate --online``, where a platform publishes its own limits (a Mastodon
    instance): where they come from (the cache key; None, the default: nowhere), the limits
    as the platform gives them, and the account's settings with them applied.

``unresolved_mentions(text)``
    For ``validate --online``: the @mentions in ``text`` that name no account, so they would
    go out as plain text (Bluesky). By default none are checked.

``check_credentials()``
    Verify the account's credentials with the platform; return a description of the account
    ("@campaign@mastodon.social"). Raise ``PermanentError`` when they are wrong.

The exceptions (``PublishError`` and its three kinds) are drawn in ``postscheduler.errors``.
Messages must never contain a secret: publishers build them from the platform's response
body, never from request headers or URLs that carry tokens.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..config import Settings
from ..errors import FetchError, PermanentError, TransientError
from ..ledger import DeliveryKey
from ..platforms import Platform, get_platform
from ..platforms.base import AccountConfig, LinkSpan, Message
from ..posts.models import Image

if TYPE_CHECKING:
    import httpx


@dataclasses.dataclass(frozen=True, slots=True)
class Published:
    remote_id: str | None
    url: str | None = None


class Resolution(enum.Enum):
    NOT_SENT = "not sent"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True, slots=True)
class PublishJob:
    """One part of one post for one account, exactly as rendered."""

    key: DeliveryKey
    identity: str
    text: str
    image: Image | None
    image_path: str | None  # resolved path of image.file, inside posts_dir
    link: str | None
    language: str | None
    content_warning: str | None
    reply_to: Published | None  # the previous part of the thread, once published
    root: Published | None  # the first part of the thread
    parts: int  # how many parts the thread has
    due_at: dt.datetime
    attempt: int
    # Links as the text shows them (UTF-8 byte ranges and their URIs), where render worked
    # them out (Bluesky shows long links shortened); None: find them in the text.
    links: tuple[LinkSpan, ...] | None = None
    # What render says this part really sends (Telegram: a photo, then the text replying to
    # it); empty: one message of ``text`` and ``image``.
    messages: tuple[Message, ...] = ()
    # When the engine sends it, on its clock (a rehearsal's is simulated); None: now.
    sent_at: dt.datetime | None = None
    # What an earlier attempt of this delivery recorded with ``checkpoint`` (a container id).
    progress: str | None = None
    # Writes ``progress`` to the ledger and returns once it is committed: a publisher with
    # several steps records what it made before the step that publishes it. None: nowhere
    # to keep it (a test, a rehearsal), and the publisher goes on without.
    checkpoint: Callable[[str], Awaitable[None]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    # "post", or "alert": a message to the campaign's own people (webhook receivers tell
    # them apart by it).
    kind: str = "post"

    async def record(self, progress: str) -> None:
        if self.checkpoint is not None:
            await self.checkpoint(progress)

    def as_record(self) -> dict[str, Any]:
        """The delivery as JSON-ready data: what the outbox writes and the webhook sends."""
        image = None
        if self.image is not None:
            image = {
                "file": self.image.file,
                "url": self.image.url,
                "alt": self.image.alt,
                "credit": self.image.credit,
            }
        return {
            "id": self.identity,
            "kind": self.kind,
            "post_id": self.key.post_id,
            "account": self.key.account,
            "part": self.key.part + 1,
            "parts": self.parts,
            "in_reply_to": self.reply_to.remote_id if self.reply_to else None,
            "text": self.text,
            "link": self.link,
            "image": image,
            "language": self.language,
            "content_warning": self.content_warning,
            "due_at": self.due_at.isoformat(),
        }


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by this user only (tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp keeps its own mode through O_CREAT: set it
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def delivery_identity(key: DeliveryKey) -> str:
    """The default client identity: the same for a delivery on every attempt and restart."""
    digest = hashlib.sha256(f"{key.post_id}\0{key.account}\0{key.part}".encode()).hexdigest()
    return f"postscheduler-{digest[:32]}"


# Looking for a post whose answer was lost: how many of the account's newest are read, and
# how long before its due time one may have been made (clocks differ).
RECENT = 25
CLOCK_SKEW = dt.timedelta(minutes=5)


def expiry_warning(account: str, expires: dt.datetime, now: dt.datetime) -> list[str]:
    """A warning when ``expires`` is within two weeks of ``now`` (or past)."""
    day = expires.date().isoformat()
    if expires <= now:
        return [f"{account}: the access token expired on {day}: re-authorize and set a new one"]
    if expires - now <= dt.timedelta(days=14):
        return [
            f"{account}: the access token expires on {day} "
            f"(in {(expires - now).days} days): re-authorize before then and set the new one"
        ]
    return []


IMAGE_DEADLINE = 60.0  # seconds for a whole image download, redirects included
# What an image URL may answer with: an image, or the bytes a CDN does not label.
IMAGE_TYPES = ("image/*", "application/octet-stream")


class Publisher(abc.ABC):
    platform: ClassVar[str]
    idempotent: ClassVar[bool] = False
    uses_http: ClassVar[bool] = True  # needs the shared httpx.AsyncClient

    def __init__(
        self,
        account: str,
        config: AccountConfig,
        settings: Settings,
        *,
        env: Mapping[str, str],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.account = account
        self.config = config
        self.settings = settings
        self.env = env
        self.http = http

    @property
    def spec(self) -> Platform:
        """What ``validate`` knows of this platform: its limits, formats and counting."""
        return get_platform(self.platform)

    def image_limit(self) -> int:
        """The largest image this account takes, as ``validate`` checked it."""
        limit = self.spec.image_limit(self.config)
        assert limit is not None, f"{self.platform} declares no image size limit"
        return int(limit)

    def identity(self, key: DeliveryKey, now: dt.datetime | None = None) -> str:
        """Chosen when the delivery is first claimed (``now``); kept from then on."""
        return delivery_identity(key)

    @abc.abstractmethod
    async def publish(self, job: PublishJob) -> Published: ...

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        return Resolution.NOT_SENT if self.idempotent else Resolution.UNKNOWN

    @abc.abstractmethod
    async def check_credentials(self) -> str: ...

    @property
    def limits_source(self) -> str | None:
        return None

    async def fetch_limits(self) -> dict[str, int]:
        return {}

    def with_limits(self, limits: dict[str, int]) -> AccountConfig:
        return self.config

    async def unresolved_mentions(self, text: str) -> list[str]:
        return []

    def credential_warnings(self, now: dt.datetime) -> list[str]:
        return []

    async def image_bytes(self, job: PublishJob, max_bytes: int) -> tuple[str, bytes]:
        """The job's image as (file name, bytes): read from posts_dir, or downloaded from its
        URL through the fence for addresses a post names (``fetch.py``: no private address
        unless allowed, redirects checked, at most ``max_bytes``, one deadline) for platforms
        that need the bytes. Validation already checked files; a download is checked here."""
        assert job.image is not None
        if job.image_path is not None:
            photo = Path(job.image_path)
            return photo.name, photo.read_bytes()
        assert job.image.url is not None and self.http is not None
        from .fetch import Fence, fetch

        url = job.image.url
        fence = Fence(
            max_bytes=max_bytes,
            timeout=IMAGE_DEADLINE,
            allow_private=self.settings.config.link_cards.allow_private_addresses,
        )
        try:
            fetched = await fetch(self.http, url, fence, accept=IMAGE_TYPES)
        except FetchError as exc:
            message = f"{self.platform} image download: {exc}"
            raise (TransientError(message) if exc.transient else PermanentError(message)) from None
        return url.rsplit("/", 1)[-1].split("?")[0] or "image", fetched.body

    def secret(self, field: str) -> str:
        """The value of a secret field, from the environment; PermanentError if unset."""
        ref = getattr(self.config, field)
        value = ref.resolve(self.env) if ref is not None else None
        if not value:
            raise PermanentError(
                f"{field} refers to ${{{ref.name}}}, which is not set in the environment"
            )
        return str(value)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release what the publisher holds (sessions); the HTTP client is the caller's."""
