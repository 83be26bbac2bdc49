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


# "Simple" code points: each is a cluster of its own whatever surrounds it, since UAX #29
# joins nothing to them from either side unless the neighbour is itself not simple (Extend,
# ZWJ and SpacingMark join to what precedes them, Prepend to what follows). They are
# Latin-1, Latin Extended, IPA, spacing modifiers and typographic punctuation (dashes,
# quotes, ellipsis, primes), less CR and LF, which join each other.
_SIMPLE = "\x00-\x09\x0b\x0c\x0e-\u02ff\u2010-\u2027\u2030-\u205e"
_NOT_SIMPLE = re.compile(f"[^{_SIMPLE}]+")


def graphemes(text: str) -> int:
    """Number of extended grapheme clusters.

    Full segmentation (``\\X``) is slow, so it runs only on the stretches of text that need
    it, each taken with the simple code point on either side of it: a cluster can cross from
    a simple code point into its non-simple neighbour, never between two simple ones.
    """
    if text.isascii():
        return len(text) - text.count("\r\n")  # CR LF is the only ASCII cluster of two
    n = len(text)
    segments: list[list[int]] = []
    for m in _NOT_SIMPLE.finditer(text):
        start, end = max(m.start() - 1, 0), min(m.end() + 1, n)
        if segments and start < segments[-1][1] + 1:
            segments[-1][1] = end  # fewer than two simple code points apart: one stretch
        else:
            segments.append([start, end])
    total = n
    segment_re = _grapheme_re()
    for start, end in segments:
        total -= end - start
        total += len(segment_re.findall(text, start, end))
    return total


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
