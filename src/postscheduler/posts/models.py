"""Post files: a single post, or a campaign pack (shared fields plus a ``posts:`` list).

.. code-block:: yaml

    link: https://example.org/article
    image: {file: images/photo.jpg, alt: What the photo shows., credit: Who took it}
    posts:
      - id: article
        at: 2027-01-14 09:00
        text: The article, in a sentence.

Times are parsed with the configured zone, passed as validation context
(``{"zone": ZoneInfo}``); see ``times.parse_time`` for the accepted forms.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import TimeError
from .times import parse_time

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)
_SPACE = re.compile(r"\s")
_DATE_ONLY = re.compile(r"(\d{4}-\d{2}-\d{2})(?:\s+[A-Za-z][\w/+-]*)?")
_HTTP_URL = re.compile(r"^https?://[^\s/?#@:]+(?::\d+)?(?:[/?#]\S*)?$", re.IGNORECASE)


def check_http_url(value: str) -> str:
    value = value.strip()
    if _HTTP_URL.match(value):
        return value
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise ValueError(
            f"only http:// and https:// links can be published ({scheme} is refused); "
            "write the full address, e.g. https://example.org/page"
        )
    if not parts.hostname or _SPACE.search(value):
        raise ValueError(f"{value!r} is not a valid web address")
    return value


# A BCP 47 tag as platforms take it: a 2-3 letter language, then optional subtags
# (es, pt-BR, zh-Hant, qu).
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
# What volunteers write instead, for the suggestion.
_LANGUAGE_NAMES = {
    "english": "en", "spanish": "es", "español": "es", "castellano": "es", "french": "fr",
    "français": "fr", "portuguese": "pt", "português": "pt", "german": "de", "deutsch": "de",
    "italian": "it", "quechua": "qu", "aymara": "ay", "arabic": "ar", "chinese": "zh",
    "russian": "ru", "dutch": "nl", "catalan": "ca", "welsh": "cy", "irish": "ga",
    "basque": "eu", "galician": "gl", "polish": "pl", "turkish": "tr", "hindi": "hi",
    "urdu": "ur", "japanese": "ja", "korean": "ko", "greek": "el", "swedish": "sv",
}  # fmt: skip


def check_language(value: str) -> str:
    value = value.strip()
    if _LANGUAGE_TAG.match(value):
        return value
    code = _LANGUAGE_NAMES.get(value.lower())
    suggestion = f"{code!r} for {value}" if code else "'en', 'es' or 'pt-BR'"
    raise ValueError(
        f"{value!r} is not a language tag: write the code platforms use (BCP 47), e.g. {suggestion}"
    )


def is_global_ip(text: str) -> bool | None:
    """Whether ``text`` is an IP address on the public internet (an IPv4-mapped IPv6 address
    judged as its IPv4 one); None when it is no IP address at all."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


NonEmpty = Annotated[str, BeforeValidator(_stripped), Field(min_length=1)]


# C0 and C1 controls but tab and line breaks: invisible in an editor, in a preview
# and a pull request's diff, and refused by platforms or published as a box.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str):
            no_control_characters(value)
        return value


def no_control_characters(value: str) -> str:
    """``value``, unless it holds a control character (see ``_CONTROL``): a ValueError."""
    found = _CONTROL.search(value)
    if found is not None:
        raise ValueError(
            f"contains an invisible control character, U+{ord(found[0]):04X}, at character "
            f"{found.start() + 1}: remove it (it came with pasted text, or a \\ escape in "
            "quotes)"
        )
    return value


class Image(_Strict):
    """A picture to attach: a file under ``posts_dir`` or a URL, always with alt and credit."""

    file: str | None = Field(default=None, description="Path relative to posts_dir.")
    url: str | None = Field(default=None, description="An http(s) address to fetch it from.")
    alt: str = Field(description="Alt text: what the image shows, for people who can't see it.")
    credit: str = Field(description="Photo credit, added to the published text. Required.")

    @field_validator("alt", "credit", mode="before")
    @classmethod
    def _not_blank(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            what = (
                "alt text (what the image shows)"
                if info.field_name == "alt"
                else "a photo credit (who took it, or the source)"
            )
            raise ValueError(f"is empty: every image needs {what}")
        return _stripped(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _one_source(self) -> Image:
        if (self.file is None) == (self.url is None):
            raise ValueError("an image needs exactly one of file: or url:")
        return self


class Quote(_Strict):
    """A speaker's words, published with their name (and role)."""

    text: NonEmpty
    by: NonEmpty = Field(description="Who said it.")
    role: str | None = Field(default=None, description="Their role or organisation.")


def _thread_part(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


class ThreadPart(_Strict):
    """A reply in a thread: text, optionally with its own image."""

    text: NonEmpty
    image: Image | None = None


ThreadItem = Annotated[ThreadPart, BeforeValidator(_thread_part)]


class Content(_Strict):
    """What a post publishes; an override replaces any of these for one account or platform."""

    text: str | None = Field(default=None, description="The main text.")
    link: str | None = Field(default=None, description="A web address to share (http/https).")
    image: Image | None = None
    quote: Quote | None = None
    thread: list[ThreadItem] | None = Field(
        default=None, description="Replies published after the main post, in order."
    )
    content_warning: str | None = Field(
        default=None, description="Shown before the text where the platform supports it."
    )
    language: str | None = Field(default=None, description="ISO 639 code, e.g. en or es.")

    @field_validator("text", "content_warning", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return _stripped(value)

    @field_validator("link")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return None if value is None else check_language(value)

    def has_content(self) -> bool:
        return any((self.text, self.link, self.image, self.quote, self.thread))


Override = Content


def _time(value: Any, info: ValidationInfo) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        value = value.isoformat()
    if not isinstance(value, str):
        raise ValueError("must be a time like 2027-01-14 09:00")
    date_only = _DATE_ONLY.fullmatch(value.strip())
    if date_only:
        # A day is not a time: midnight is rarely what a volunteer meant.
        day = date_only[1]
        raise ValueError(
            f"{value.strip()} has no time of day: write when, e.g. {day} 09:00 "
            f"(for midnight, {day} 00:00)"
        )
    zone = (info.context or {}).get("zone") or ZoneInfo("UTC")
    try:
        return parse_time(value, zone)
    except TimeError as exc:
        raise ValueError(str(exc)) from None


class Shared(Content):
    """Fields a campaign pack shares with all of its posts."""

    accounts: list[str] | None = Field(
        default=None, description="Account names from scheduler.yaml; default: defaults.accounts."
    )
    status: Literal["scheduled", "draft"] = Field(
        default="scheduled", description="draft: checked, never published."
    )
    expires: dt.datetime | None = Field(default=None, description="Do not publish after this time.")
    overrides: dict[str, Override] | None = Field(
        default=None, description="Per account or platform name: fields that replace the post's."
    )

    _parse_expires = field_validator("expires", mode="before")(_time)

    @field_validator("accounts", mode="before")
    @classmethod
    def _one_account(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Post(Shared):
    """One post: what to publish, when, and where."""

    id: str = Field(pattern=ID_PATTERN, description="Unique across all post files.")
    at: dt.datetime | None = Field(
        default=None,
        description="When to publish: 2027-01-14 09:00 (configured zone), "
        "2027-01-14T09:00+01:00, or 2027-01-14 09:00 Europe/Lima.",
    )

    _parse_at = field_validator("at", mode="before")(_time)

    @model_validator(mode="after")
    def _complete(self) -> Post:
        if self.at is None and self.status != "draft":
            raise ValueError("missing `at:` (when to publish), e.g. at: 2027-01-14 09:00")
        if not self.has_content():
            raise ValueError(
                "nothing to publish: give the post text, a link, an image, a quote or a thread"
            )
        if self.expires is not None and self.at is not None and self.expires <= self.at:
            raise ValueError("expires is not after at: the post could never be published")
        return self

    @property
    def is_draft(self) -> bool:
        return self.status == "draft"


class Pack(Shared):
    """A campaign pack: shared fields, and the posts that use them."""

    posts: list[dict[str, Any]] = Field(min_length=1, description="The posts of this pack.")


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def post_file_schema() -> dict[str, Any]:
    """JSON Schema of a post file, for editors (yaml-language-server) and `schema`."""
    pack_schema = Pack.model_json_schema()
    post_schema = Post.model_json_schema()
    defs = {**pack_schema.pop("$defs", {}), **post_schema.pop("$defs", {})}
    # Items of posts: are Post mappings; the loader validates them after merging the shared
    # fields, so the schema spells that out for the editor.
    pack_schema["properties"]["posts"]["items"] = {"$ref": "#/$defs/Post"}
    post_schema["properties"]["id"]["description"] += " Defaults to the file name."
    post_schema_required = [r for r in post_schema.get("required", []) if r != "id"]
    single = dict(post_schema, required=post_schema_required)
    defs["Post"] = post_schema
    _as_written(pack_schema)
    _as_written(single)
    for definition in defs.values():
        _as_written(definition)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "postscheduler post file",
        "description": "One post, or a campaign pack: shared fields plus a posts: list.",
        "oneOf": [
            {**pack_schema, "required": ["posts"]},
            {**single, "not": {"required": ["posts"]}},
        ],
        "$defs": defs,
    }


def _as_written(schema: dict[str, Any]) -> None:
    """Describe what a volunteer writes, not what pydantic parses it into: times as the
    forms ``parse_time`` reads (``2027-01-14 09:00``, which ``format: date-time`` refuses),
    and a thread's replies as a string or a mapping."""
    for name, prop in (schema.get("properties") or {}).items():
        if name in ("at", "expires"):
            prop.pop("anyOf", None)
            prop.pop("format", None)
            prop["type"] = ["string", "null"]
            prop["pattern"] = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}"
        elif name == "thread":
            prop["anyOf"] = [
                {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/ThreadPart"}]},
                },
                {"type": "null"},
            ]
