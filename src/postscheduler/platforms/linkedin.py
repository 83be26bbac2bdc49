"""LinkedIn (Posts API, a member or an organization page): ``commentary`` of at most 3,000
characters, written in LinkedIn's "little text" format, where ``| { } @ [ ] ( ) < > # \\ * _ ~``
are markup: every one is escaped with a backslash, or LinkedIn silently cuts or misreads the
text (an unescaped "(" drops everything after it). A #hashtag becomes LinkedIn's hashtag
template, so it stays a hashtag. The limit is counted on the commentary as sent, escapes
included, so a post that fits here is never cut there.

One image per post (``content.media``, uploaded, with ``altText``); a link post becomes an
article card (``content.article``) with the page's title, description and image, which the
client must supply. Thread parts are comments, text only. Access tokens last 60 days and
cannot be refreshed without LinkedIn partner status: ``token_expires`` makes the warnings
come two weeks before.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from . import counting
from .base import MB, AccountConfig, HttpUrl, Platform, Secret, TextLimit

RESERVED = frozenset("\\|{}@[]()<>#*_~")
_HASHTAG = re.compile(r"(?<![\w&/])#(\w+)")
_URN = re.compile(r"^urn:li:(person|organization):[A-Za-z0-9_-]+$")


def _escape(text: str) -> str:
    return "".join("\\" + c if c in RESERVED else c for c in text)


def little_text(text: str) -> str:
    """``text`` as LinkedIn's little text: reserved characters escaped, hashtags templated,
    links left readable (escaped characters inside them are read back as themselves)."""
    out: list[str] = []
    pos = 0
    for start, end, _ in counting.url_spans(text):
        out.append(_plain(text[pos:start]))
        out.append(_escape(text[start:end]))
        pos = end
    out.append(_plain(text[pos:]))
    return "".join(out)


def _plain(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _HASHTAG.finditer(text):
        out.append(_escape(text[pos : m.start()]))
        out.append("{hashtag|\\#|" + _escape(m[1]) + "}")
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def commentary_length(text: str) -> int:
    return len(little_text(text))


def _version(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"20\d\d(0[1-9]|1[0-2])", text):
        raise ValueError(
            "must be a LinkedIn API version as YYYYMM, e.g. 202611 (LinkedIn-Version; see "
            "https://learn.microsoft.com/linkedin/marketing/versioning)"
        )
    return text


class LinkedInAccount(AccountConfig):
    platform: Literal["linkedin"]
    author: str = Field(description="urn:li:person:ID or urn:li:organization:ID")
    token: Secret
    version: Annotated[str, BeforeValidator(_version)]
    api_base: HttpUrl = "https://api.linkedin.com"
    token_expires: dt.date | None = Field(
        default=None, description="When the 60-day access token expires (warned 14 days before)."
    )

    @field_validator("author")
    @classmethod
    def _urn(cls, value: str) -> str:
        if not _URN.match(value):
            raise ValueError(
                "must be a person or organization URN: urn:li:person:ID (the `sub` of "
                "/v2/userinfo) or urn:li:organization:ID (the number in the page's admin URL)"
            )
        return value

    @property
    def is_organization(self) -> bool:
        return self.author.startswith("urn:li:organization:")


PLATFORM = Platform(
    "linkedin",
    "LinkedIn",
    LinkedInAccount,
    "LinkedInPublisher",
    (TextLimit("characters as sent (escapes included)", commentary_length, 3000),),
    max_image_bytes=5 * MB,
    image_formats=frozenset({"JPEG", "PNG", "GIF"}),
    max_alt=4086,
    builds_link_cards=True,
    reply_images=False,
)
