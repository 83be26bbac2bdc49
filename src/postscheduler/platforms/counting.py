"""The units platforms count text in; each platform module says which it uses.

The platforms disagree on what a "character" is, and a post that fits one can be rejected by
another, so every rule and every preview counts through a platform's ``measure``, built on
these: graphemes (what a reader sees as one character, ``👨‍👩‍👧‍👦`` is 1, per Unicode UAX #29,
using the ``regex`` module's ``\\X``: current Unicode, implemented in C), UTF-8 bytes, UTF-16
code units and code points, and the URLs twitter-text finds (Mastodon counts each as 23).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import regex

# twitter_text compiles its URL and emoji expressions on import, so it is imported only when
# a text can contain a URL or an X account needs counting (platforms/x.py): organiser
# commands on posts for other platforms never pay for it.


@functools.cache
def _grapheme_re() -> regex.Pattern[str]:
    import regex  # ~10 ms to import: only pay it when a limit needs counting

    return regex.compile(r"\X")


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
    spans = []
    # twitter-text's expression costs ~0.2 µs a character, tried at every one of them (47 µs
    # for a 200-character post): it runs only on each word with a "://" in it, with the
    # character before it (the expression looks one back). A URL never spans ASCII
    # whitespace, so the words give what the whole text gives (tested on twitter-text's
    # conformance texts).
    for word in _WORD_WITH_SCHEME.finditer(text):
        if _PLAIN_URL.fullmatch(word[0]):
            spans.append((word.start(), word.end(), word[0]))
            continue
        lo = max(word.start() - 1, 0)
        extract = _url_extractor()
        for u in extract(text[lo : word.end()], extract_urls_without_protocol=False):
            spans.append((u["indices"][0] + lo, u["indices"][1] + lo, u["url"]))
    return spans


_WORD_WITH_SCHEME = re.compile(r"[^ \t\n\r]*://[^ \t\n\r]*")
# A word that is a plain link (https://campaign.example.org/news/peru-2026, as most posts'
# links are) is one URL, whole, for twitter-text: building its expressions costs ~0.1 s of
# a ``validate`` (docs/performance.md), for nothing when every link is plain. Plain means
# lower-case ASCII host labels without "--" (no punycode), one of these top-level domains
# (each a twitter-text TLD; not "co", for its t.co rule), and a path of letters, digits,
# "_", "-" and "/" (each a character a twitter-text URL may end with). Anything else
# (a query, trailing punctuation, a port, another TLD) goes to twitter-text. A test checks
# the two agree on twitter-text's conformance texts and on random near-plain words.
PLAIN_TLDS = (
    "com",
    "org",
    "net",
    "info",
    "edu",
    "gov",
    "int",
    "io",
    "app",
    "dev",
    "uk",
    "pe",
    "de",
    "fr",
    "es",
    "it",
    "nl",
    "be",
    "ch",
    "at",
    "ca",
    "au",
    "us",
    "br",
    "ar",
    "cl",
    "mx",
    "ie",
    "pt",
    "se",
    "no",
    "dk",
    "fi",
    "pl",
    "nz",
    "za",
    "in",
)
_PLAIN_URL = re.compile(
    r"https?://(?:(?!(?:[a-z0-9-]*--))[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}"
    rf"(?:{'|'.join(PLAIN_TLDS)})(?:/[A-Za-z0-9_/-]{{0,500}})?"
)


_TWITTER_TEXT = "twitter_text"
_package_lock = threading.RLock()


@functools.cache
def _url_extractor() -> Callable[..., list[dict[str, Any]]]:
    with _package_lock:
        if _TWITTER_TEXT not in sys.modules:
            _defer_package_init(_TWITTER_TEXT)
        from twitter_text.extract_urls import extract_urls_with_indices

    extract: Callable[..., list[dict[str, Any]]] = extract_urls_with_indices
    return extract


def _defer_package_init(name: str) -> None:
    """Make ``name`` importable without running its ``__init__`` until one of its own names
    is used (PEP 562's module ``__getattr__``).

    twitter_text's ``__init__`` imports its tweet parser, and with it an emoji expression
    built from a Unicode table read through ``pkg_resources``: 115 ms of a 170 ms import,
    none of it needed to find URLs. Every ``validate`` with a Mastodon or Bluesky account
    paid it (docs/performance.md). Imported by name (``twitter_text.parse_tweet``) or used
    as a whole (``twitter_text.parse_tweet(...)``), the package is still the same.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not an ordinary package: imported as usual
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)

    def complete(attribute: str) -> Any:
        with _package_lock:
            if "__getattr__" in vars(package):
                del package.__getattr__
                loader.exec_module(package)
        return getattr(package, attribute)

    setattr(package, "__getattr__", complete)  # noqa: B010 (a module, not a class)
    sys.modules[name] = package


_HASHTAG = re.compile(r"(?<![\w&/])#(\w+)")
_MENTION = re.compile(r"(?<![\w/])@([A-Za-z0-9._]+[A-Za-z0-9_])")


def _without_urls(text: str) -> str:
    # A URL's fragment ("#top") or path ("/@name") is neither a hashtag nor a mention.
    for start, end, _ in reversed(url_spans(text)):
        text = text[:start] + " " + text[end:]
    return text


def hashtags(text: str) -> list[str]:
    """The #hashtags in ``text`` (without "#"), in order, URLs left out."""
    return _HASHTAG.findall(_without_urls(text))


def mentions(text: str) -> list[str]:
    """The @mentions in ``text`` (without "@"), in order, URLs and e-mail addresses left out."""
    return _MENTION.findall(_without_urls(text))
