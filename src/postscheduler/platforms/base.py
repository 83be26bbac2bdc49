"""What every platform module declares: its account model, its limits, how it counts text,
how it shows links and how one rendered part is really sent.

A platform module holds only *offline* knowledge of its platform: ``validate``, ``queue`` and
``preview`` read it without touching the network. The HTTP side of the same platform is
``postscheduler.publishers.<name>``. A publisher may learn tighter or looser values at run
time (Mastodon instances publish theirs); an account's ``max_characters`` overrides the
platform's first text limit. Modules here must stay import-light: no httpx, no publisher code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ..posts.times import parse_duration
from . import counting

if TYPE_CHECKING:
    from ..posts.images import ImageInfo
    from ..posts.models import Image

MB = 1_000_000
MiB = 1024 * 1024

COMMON_IMAGES = frozenset({"JPEG", "PNG", "GIF", "WEBP"})

LinkSpan = tuple[int, int, str]  # UTF-8 byte start, byte end, the URI it stands for

# --- the types of account settings ------------------------------------------------------

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    return parse_duration(value)


Duration = Annotated[dt.timedelta, BeforeValidator(_duration)]

_NAME_MAX, _PATH_MAX = 255, 4095  # bytes: Linux's limits, about what other systems allow


def local_path(value: str) -> str:
    """A path the file system can take. A NUL or an over-long name is an error here, under
    its key, rather than a traceback from the first command that opens it."""
    if "\0" in value:
        raise ValueError("a path cannot contain a NUL character")
    raw = os.fsencode(value)
    if len(raw) > _PATH_MAX or any(len(name) > _NAME_MAX for name in raw.split(b"/")):
        raise ValueError(
            f"the path is too long (at most {_NAME_MAX} bytes a name, {_PATH_MAX:,} in all)"
        )
    return value


LocalPath = Annotated[str, AfterValidator(local_path)]


@dataclasses.dataclass(frozen=True, slots=True)
class EnvRef:
    """A reference to an environment variable; the value is looked up, never kept."""

    name: str

    def resolve(self, env: Mapping[str, str]) -> str | None:
        return env.get(self.name) or None

    def __str__(self) -> str:
        return "${" + self.name + "}"


def _env_ref(value: Any) -> EnvRef:
    if isinstance(value, EnvRef):
        return value
    if isinstance(value, str):
        m = _ENV_REF.match(value.strip())
        if m:
            return EnvRef(m[1])
    # Deliberately do not echo the value: it is probably the secret itself.
    raise ValueError(
        "a secret must not be written in scheduler.yaml; put it in an environment variable "
        "(or .env) and write a reference such as ${MASTODON_TOKEN}"
    )


Secret = Annotated[EnvRef, BeforeValidator(_env_ref)]


def _http_url(value: Any) -> str:
    if isinstance(value, str) and re.match(r"^https?://[^\s/]+", value):
        return value.rstrip("/")
    raise ValueError("must be an http(s) URL such as https://mastodon.social")


HttpUrl = Annotated[str, BeforeValidator(_http_url)]


def _url_or_ref(value: Any) -> str | EnvRef:
    if isinstance(value, str) and _ENV_REF.match(value.strip()):
        return _env_ref(value)
    return _http_url(value)


UrlOrSecret = Annotated[str | EnvRef, BeforeValidator(_url_or_ref)]


class AccountConfig(BaseModel):
    """What every account has; each platform's model adds its own keys.

    The platform models build their validators only when an account on that platform is
    configured (``defer_build``): a validator costs milliseconds to build, and every
    command pays for the ones it builds at start-up.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    platform: str
    max_characters: int | None = Field(
        default=None, gt=0, description="This account's own text limit, if not the platform's."
    )
    min_gap: Duration | None = Field(
        default=None, description="Minimum time between two posts on this account."
    )
    max_per_hour: int | None = Field(
        default=None,
        gt=0,
        description="The burst guard: at most this many posts an hour on this account.",
    )

    def secrets(self) -> dict[str, EnvRef]:
        return {k: v for k, v in self if isinstance(v, EnvRef)}

    def shared_ledger_problem(self) -> str | None:
        """Why several daemons cannot all publish to this account as configured, if they
        cannot (they share a PostgreSQL ledger, each with its own copy of the secrets)."""
        return None

    @classmethod
    def keys_for(cls, data: Mapping[str, Any]) -> set[str]:
        """The keys allowed in ``data``, which depend on its platform."""
        from . import PLATFORMS

        spec = PLATFORMS.get(str(data.get("platform")))
        model = spec.account_model if spec is not None else cls
        return set(model.model_fields)


# --- limits and counting ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TextLimit:
    unit: str
    count: Callable[[str], int]
    limit: int


@dataclasses.dataclass(frozen=True, slots=True)
class Measure:
    """One count of a text against one limit, e.g. 312 of 300 graphemes."""

    count: int
    limit: int | None
    unit: str

    @property
    def over(self) -> bool:
        return self.limit is not None and self.count > self.limit

    def __str__(self) -> str:
        if self.limit is None:
            return f"{self.count} {self.unit}"
        return f"{self.count}/{self.limit} {self.unit}"


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One request's worth of what a part publishes: most platforms send a part as one
    message; Telegram may send a photo with a caption and the text as its reply."""

    text: str
    image: Image | None


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """Something a platform refuses (or changes) in a text or an image, for ``validate``."""

    code: str
    message: str
    hint: str
    is_error: bool = True


@dataclasses.dataclass(frozen=True)
class Platform:
    """A platform as ``validate``, ``preview`` and the publishers know it.

    A platform whose counting, link display or sending differs from the defaults subclasses
    this in its own module and overrides the method concerned.
    """

    name: str
    label: str
    account_model: type[AccountConfig]
    publisher: str  # the class in postscheduler.publishers.<name> that sends to it
    text_limits: tuple[TextLimit, ...]
    max_image_bytes: int | None
    image_formats: frozenset[str] | None = COMMON_IMAGES  # None: any image Pillow knows
    image_files: bool = True  # can upload an image file (else only show one by URL)
    max_alt: int | None = None
    # The publisher re-encodes an image over max_image_bytes or in another format to fit
    # (a warning in validate and preview) instead of refusing it.
    fits_images: bool = False
    # The client must build a link's preview card itself (fetching the page when publishing).
    builds_link_cards: bool = False
    # Shows a post's content_warning before its text (else validate says it will not be).
    content_warnings: bool = False
    # Has no text-only posts: every post needs an image (Instagram).
    needs_image: bool = False
    # Fetches images itself from a public URL (Instagram, Threads): an image file must be
    # served under the configuration's media_url.
    pulls_images: bool = False
    # Thread parts are comments that carry text only (Facebook, Instagram, LinkedIn): their
    # images, and so their credit lines, are left out.
    reply_images: bool = True

    def measure(self, text: str, account: AccountConfig | None = None) -> list[Measure]:
        """Count ``text`` against every limit of this platform; an account's own
        ``max_characters`` replaces the first limit."""
        max_characters = account.max_characters if account is not None else None
        if not self.text_limits:
            return [Measure(counting.graphemes(text), max_characters, "characters")]
        measures = []
        for i, tl in enumerate(self.text_limits):
            limit = max_characters if (i == 0 and max_characters is not None) else tl.limit
            measures.append(Measure(self.count(tl, text, account), limit, tl.unit))
        return measures

    def count(self, limit: TextLimit, text: str, account: AccountConfig | None) -> int:
        """``text`` counted for ``limit``; a platform whose count depends on the account
        (Mastodon's URL length) overrides this."""
        return limit.count(text)

    def text_problems(self, text: str) -> list[Problem]:
        """What this platform refuses in a text beyond its length (too many hashtags)."""
        return []

    def image_problems(self, info: ImageInfo) -> list[Problem]:
        """What this platform refuses in an image beyond format and size (aspect ratio)."""
        return []

    def image_limit(self, account: AccountConfig | None = None) -> int | None:
        """The largest image in bytes this account takes (an instance may set its own)."""
        return self.max_image_bytes

    def display(
        self, text: str, account: AccountConfig | None = None
    ) -> tuple[str, tuple[LinkSpan, ...] | None]:
        """The text as the platform shows it, and where its links are when the client must
        mark them (Bluesky's facets); None: the platform finds links itself."""
        return text, None

    def secret_forms(self, account: AccountConfig, env: Mapping[str, str]) -> list[str]:
        """Forms the account's secrets take on the wire that are not the values themselves
        (X sends base64 of ``client_id:client_secret``), so the redactor masks them too."""
        return []

    def messages(self, text: str, image: Image | None, credit: str | None) -> tuple[Message, ...]:
        """How one rendered part is really sent: ``credit`` is the image's credit line."""
        return (Message(text, image),)
