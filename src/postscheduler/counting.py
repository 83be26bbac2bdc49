"""Count text the way each platform counts it.

The platforms disagree on what a "character" is, and a post that fits one can be rejected by
another, so every rule and every preview goes through these functions:

- graphemes: what a reader sees as one character (``👨‍👩‍👧‍👦`` is 1), per Unicode UAX #29,
  using the ``regex`` module's ``\\X`` (kept current with Unicode, implemented in C);
- Mastodon: graphemes, after every http(s) URL is replaced by 23 characters and every remote
  mention ``@user@domain`` by ``@user``, as ``StatusLengthValidator`` does;
- Bluesky: graphemes *and* UTF-8 bytes (the lexicon limits both);
- X: the twitter-text v3 weighted length, from ``twitter-text-parser`` (a port of the
  reference implementation that passes the upstream conformance suite).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import regex

# twitter_text compiles its URL and emoji expressions on import (~0.4 s), so it is imported
# only when a text can contain a URL or an X account needs counting: organiser commands on
# posts for other platforms never pay for it.


@functools.cache
def _grapheme_re() -> regex.Pattern[str]:
    import regex  # ~10 ms to import: only pay it when a limit needs counting

    return regex.compile(r"\X")


@functools.cache
def _mention_re() -> regex.Pattern[str]:
    import regex

    # Mastodon's Account::MENTION_RE: only the username part of a remote mention counts.
    return regex.compile(
        r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@[\w.-]+\w+)?", regex.IGNORECASE
    )


MASTODON_URL_LENGTH = 23


# Code points that always form a cluster of their own (UAX #29: no Extend, ZWJ, SpacingMark,
# Prepend, Regional Indicator, Hangul or emoji among them): Latin-1, Latin Extended, IPA,
# spacing modifiers, and typographic punctuation (dashes, quotes, ellipsis, primes).
_SIMPLE_TEXT = re.compile("[\x00-\u02ff\u2010-\u2027\u2030-\u205e]*")


def graphemes(text: str) -> int:
    """Number of extended grapheme clusters."""
    if text.isascii() or _SIMPLE_TEXT.fullmatch(text):
        # Such text is one cluster per code point, except that CR LF is one cluster.
        return len(text) - text.count("\r\n")
    return len(_grapheme_re().findall(text))


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units, as JavaScript and the Telegram Bot API count."""
    return len(text.encode("utf-16-le")) // 2


def code_points(text: str) -> int:
    return len(text)


def url_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, url) of every URL with a scheme, as twitter-text extracts them."""
    if "://" not in text:
        return []  # only URLs with a scheme count, and they all contain "://"
    from twitter_text.extract_urls import extract_urls_with_indices

    found = extract_urls_with_indices(text, extract_urls_without_protocol=False)
    return [(u["indices"][0], u["indices"][1], u["url"]) for u in found]


def mastodon_length(text: str, url_length: int = MASTODON_URL_LENGTH) -> int:
    """Length of a status as Mastodon counts it against ``max_characters``."""
    if not text:
        return 0
    spans: list[tuple[int, int, str]] = [
        (start, end, "x" * url_length) for start, end, _ in url_spans(text)
    ]
    for m in _mention_re().finditer(text):
        if not any(start <= m.start() < end for start, end, _ in spans):
            spans.append((m.start(), m.end(), "@" + m[1]))
    spans.sort()
    pieces: list[str] = []
    pos = 0
    for start, end, replacement in spans:
        pieces.append(text[pos:start])
        pieces.append(replacement)
        pos = end
    pieces.append(text[pos:])
    return graphemes("".join(pieces))


@functools.cache
def _x_options(version: int = 3) -> dict[str, Any]:
    from twitter_text.config import config

    return dict(config[f"version{version}"])


def x_parse(text: str, options: dict[str, Any] | None = None) -> Any:
    """Full twitter-text parse result (weightedLength, valid, permillage, ranges)."""
    from twitter_text import parse_tweet

    return parse_tweet(text, options=options or _x_options())


def x_weighted_length(text: str, options: dict[str, Any] | None = None) -> int:
    """twitter-text weighted length (v3 config unless ``options`` says otherwise)."""
    return int(x_parse(text, options).weightedLength)
