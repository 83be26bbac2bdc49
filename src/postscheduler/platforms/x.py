"""X: 280 characters of twitter-text v3 weighted length (most scripts count 1, CJK and emoji
2, every URL 23), from ``twitter-text-parser``, a port of the reference implementation that
passes the upstream conformance suite. Images up to 5 MB, alt text up to 1,000 characters.

An account signs in with OAuth 1.0a user context (the four keys) or OAuth 2.0 (a client id
and a refresh token, which X rotates on every use).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import model_validator

from .base import MB, AccountConfig, HttpUrl, Platform, Secret, TextLimit


@functools.cache
def _x_options(version: int = 3) -> dict[str, Any]:
    from twitter_text.config import config

    return dict(config[f"version{version}"])


def x_parse(text: str, options: dict[str, Any] | None = None) -> Any:
    """Full twitter-text parse result (weightedLength, valid, permillage, ranges)."""
    from twitter_text.parse_tweet import parse_tweet

    return parse_tweet(text, options=options or _x_options())


# twitter-text's URL expression is super-linear on long runs of "label." (a 4,000-character
# text took 25 s, holding the GIL, and so the daemon's event loop): texts longer than this are
# not parsed. A text that long fits X's 280 only if most of it is URLs (each counts 23), which
# no campaign post is; it is counted character by character, by X's weights, and is over.
PARSE_LIMIT = 1_000  # code points; the worst case under it takes about a second


def _weights_only(text: str, options: dict[str, Any]) -> int:
    from twitter_text.get_character_weight import get_character_weight

    total = sum(get_character_weight(char, options) for char in text)
    return int(total / options["scale"])


@functools.lru_cache(maxsize=4096)
def _weighted_length(text: str) -> int:
    options = _x_options()
    if len(text) > PARSE_LIMIT:
        return _weights_only(text, options)
    return int(x_parse(text, options).weightedLength)


def x_weighted_length(text: str, options: dict[str, Any] | None = None) -> int:
    """twitter-text weighted length (v3 config unless ``options`` says otherwise); texts over
    ``PARSE_LIMIT`` code points are counted without looking for URLs. Counts are cached: a
    daemon re-validates the same texts on every reload."""
    if options is None:
        return _weighted_length(text)
    return int(x_parse(text, options).weightedLength)


class XAccount(AccountConfig):
    """OAuth 1.0a user context (the four keys), or OAuth 2.0 (client id + refresh token)."""

    platform: Literal["x"]
    consumer_key: Secret | None = None
    consumer_secret: Secret | None = None
    access_token: Secret | None = None
    access_token_secret: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None  # only for confidential OAuth 2.0 clients
    refresh_token: Secret | None = None  # the first one; X rotates it, the newest is kept
    api_base: HttpUrl = "https://api.x.com"

    @property
    def uses_oauth2(self) -> bool:
        return self.refresh_token is not None

    def shared_ledger_problem(self) -> str | None:
        if not self.uses_oauth2:
            return None
        # Each daemon keeps the newest refresh token in its own state folder: the first to
        # refresh leaves the others holding one X has revoked.
        return (
            "OAuth 2.0 refresh tokens rotate at each refresh, and each daemon keeps its own: "
            "the first daemon to refresh leaves the others with a revoked token"
        )

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> XAccount:
        oauth1 = [
            self.consumer_key,
            self.consumer_secret,
            self.access_token,
            self.access_token_secret,
        ]
        if all(oauth1) and self.refresh_token is None:
            return self
        if not any(oauth1) and self.client_id and self.refresh_token is not None:
            return self
        raise ValueError(
            "give either consumer_key, consumer_secret, access_token and access_token_secret "
            "(OAuth 1.0a), or client_id and refresh_token (OAuth 2.0)"
        )


class X(Platform):
    def secret_forms(self, account: AccountConfig, env: Mapping[str, str]) -> list[str]:
        if not isinstance(account, XAccount) or account.client_secret is None:
            return []
        secret = account.client_secret.resolve(env)
        if not secret:
            return []
        # HTTP Basic credentials of a confidential OAuth 2.0 client, as the token call sends.
        basic = base64.b64encode(f"{account.client_id}:{secret}".encode()).decode()
        return [basic]


PLATFORM = X(
    "x",
    "X",
    XAccount,
    "XPublisher",
    (TextLimit("weighted characters", x_weighted_length, 280),),
    max_image_bytes=5 * MB,
    max_alt=1000,
)
