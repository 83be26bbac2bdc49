"""Counters against the platforms' own test vectors, read from ../shared/interop at run time."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from postscheduler.platforms import PLATFORMS, counting
from postscheduler.platforms.mastodon import MastodonAccount, mastodon_length
from postscheduler.platforms.x import x_parse

from .conftest import shared_file

_CONFIG_KEYS = {
    "maxWeightedTweetLength": "max_weighted_tweet_length",
    "defaultWeight": "default_weight",
    "transformedURLLength": "transformed_url_length",
    "emojiParsingEnabled": "emoji_parsing_enabled",
}

# The conformance README: each weighted-length group runs with the config it was written for.
_GROUPS = {
    "WeightedTweetsCounterTest": "v2",
    "WeightedTweetsWithDiscountedEmojiCounterTest": "v3",
    "UnicodeDirectionalMarkerCounterTest": "v3",
}


def _twitter_config(version: str) -> dict[str, Any]:
    raw = json.loads(shared_file(f"twitter-text/config/{version}.json").read_text())
    options = {_CONFIG_KEYS.get(k, k): v for k, v in raw.items()}
    options.setdefault("emoji_parsing_enabled", False)
    return options


def _twitter_cases() -> list[Any]:
    try:
        path = shared_file("twitter-text/conformance/validate.yml")
    except pytest.skip.Exception as exc:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=str(exc)))]
    tests = yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
    return [
        pytest.param(group, case, id=f"{group}-{i}-{case['description'][:40]}")
        for group in _GROUPS
        for i, case in enumerate(tests[group])
    ]


@pytest.mark.parametrize(("group", "case"), _twitter_cases())
def test_x_weighted_length_conformance(group: str, case: dict[str, Any]) -> None:
    result = x_parse(case["text"], _twitter_config(_GROUPS[group]))
    expected = case["expected"]
    got = result.asdict()
    for key in (
        "weightedLength",
        "valid",
        "permillage",
        "validRangeStart",
        "validRangeEnd",
        "displayRangeStart",
        "displayRangeEnd",
    ):
        assert got[key] == expected[key], key


def _json(relative: str) -> Any:
    return json.loads(shared_file(relative).read_text(encoding="utf-8"))


def test_mastodon_status_length_vectors() -> None:
    data = _json("mastodon/status-length-vectors.json")
    assert len(data["cases"]) >= 30
    for case in data["cases"]:
        assert mastodon_length(case["text"]) == case["expected_length"], case["text"]
    # Mastodon counts the content warning together with the text.
    check = data["spoiler_text_check"]
    assert mastodon_length(check["spoiler_text"]) == check["adds"]


def test_bluesky_length_vectors() -> None:
    data = _json("bluesky/richtext-vectors.json")
    for case in data["length"]:
        assert counting.utf8_bytes(case["text"]) == case["utf8ByteLength"], case["text"]
        assert counting.graphemes(case["text"]) == case["graphemeLength"], case["text"]
    for case in data["grapheme_length"]:
        assert counting.graphemes(case["text"]) == case["graphemeLength"], case["text"]
    for case in data["detect_mentions_and_links"]:
        assert counting.utf8_bytes(case["text"]) == case["utf8ByteLength"]


def test_graphemes_match_full_segmentation_on_mixed_text() -> None:
    """The shortcut over simple stretches agrees with \\X on text built to stress its edges."""
    import random

    rng = random.Random(2027)
    pieces = [
        "a",
        "é",
        " ",
        "—",
        "“",
        "\r",
        "\n",
        "\r\n",
        "\t",
        "\u0301",
        "\u200d",
        "\u200c",
        "\ufe0f",  # extend, ZWJ, ZWNJ, variation selector
        "\u0600",
        "\u0903",
        "न",
        "म",
        "स्",
        "ते",  # prepend, spacing mark, Devanagari
        "🧵",
        "✊",
        "🏽",
        "👨",
        "👩",
        "🇵",
        "🇪",
        "한",
        "ᄀ",
        "ᅡ",
        "ᆨ",
        "日",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert counting.graphemes(text) == len(counting._grapheme_re().findall(text)), repr(text)


def test_simple_ranges_are_one_cluster_per_code_point() -> None:
    simple = [
        "tab\tand\x7f",
        "Perú: “Solidarity” — café… ½ ǅ ʰ",
        "".join(chr(c) for c in range(0x20, 0x300)),
        "".join(chr(c) for c in [*range(0x2010, 0x2028), *range(0x2030, 0x205F)]),
    ]
    for text in simple:
        assert counting._NOT_SIMPLE.search(text) is None
        assert counting.graphemes(text) == len(counting._grapheme_re().findall(text)) == len(text)
    for text in ["e\u0301", "a\u200db", "✊🏽", "🇵🇪", "नमस्ते", "한국어", "\r\n"]:
        assert counting._NOT_SIMPLE.search(text)
        assert counting.graphemes(text) == len(counting._grapheme_re().findall(text)), text


def test_bluesky_counts_graphemes_and_bytes() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"
    measures = PLATFORMS["bluesky"].measure(family * 120)
    graphemes, utf8 = measures
    assert (graphemes.count, graphemes.over) == (120, False)
    assert (utf8.count, utf8.over) == (3000, False)
    measures = PLATFORMS["bluesky"].measure(family * 121)
    assert not measures[0].over and measures[1].over  # bytes bind before graphemes do


def test_mastodon_account_limits_override() -> None:
    url = "https://example.org/" + "a" * 100

    def account(**settings: Any) -> MastodonAccount:
        return MastodonAccount.model_validate(
            {"platform": "mastodon", "instance": "https://m.test", "token": "${T}", **settings}
        )

    mastodon = PLATFORMS["mastodon"]
    assert mastodon.measure(url)[0].count == 23
    assert mastodon.measure(url, account(characters_reserved_per_url=30))[0].count == 30
    assert mastodon.measure("x" * 600, account(max_characters=1000))[0].over is False


def test_telegram_counts_utf16() -> None:
    assert counting.utf16_units("😀") == 2
    assert PLATFORMS["telegram"].measure("😀" * 2048)[0].over is False
    assert PLATFORMS["telegram"].measure("😀" * 2049)[0].over is True


def test_x_counting_stays_linear_on_hostile_text() -> None:
    """ "a." * 2000 took 25 s in twitter-text's URL expression; over PARSE_LIMIT it is not
    parsed, and still counted over the limit."""
    from postscheduler.platforms.x import PARSE_LIMIT, x_weighted_length

    hostile = "a." * 2000
    assert len(hostile) > PARSE_LIMIT
    assert x_weighted_length(hostile) == 4000
    assert PLATFORMS["x"].measure(hostile)[0].over
    assert x_weighted_length("日本" * 600) == 2400  # X's weights still apply


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("Hello", 5),
        ("Perú", 4),  # a letter is one, whatever its bytes
        ("日本語", 3),
        ("✊", 3),  # an emoji counts its UTF-8 bytes
        ("✊🏽", 7),  # with its skin tone: 3 + 4
        ("🇵🇪", 8),  # a flag: two regional indicators
        ("👨‍👩‍👧‍👦", 25),  # a family: four people and three joiners
        ("1️⃣", 7),  # a keycap
        ("Perú ✊🏽", 12),
        ("e\u0301", 1),  # a letter and its combining accent: one character
    ],
)
def test_threads_counts_emoji_as_their_utf8_bytes(text: str, length: int) -> None:
    """Threads' documented rule (500 characters, emoji counted by their UTF-8 byte count):
    no public test vectors exist, so these follow the rule's words cluster by cluster."""
    from postscheduler.platforms.threads import threads_length

    assert threads_length(text) == length


def test_finding_urls_leaves_twitter_texts_tweet_parser_unloaded() -> None:
    """url_spans skips twitter_text's __init__ (its emoji table costs most of the import),
    and for a plain link twitter-text altogether; the package is whole again for whoever
    uses the rest of it, in either order."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from postscheduler.platforms import counting\n"
        "print(counting.url_spans('see https://example.org/a now'))\n"
        "print('twitter_text.extract_urls' in sys.modules)\n"  # a plain link: not needed
        "print(counting.url_spans('see https://example.org/a. now'))\n"
        "print(sorted(m for m in ('pkg_resources', 'twitter_text.regexp.emoji') "
        "if m in sys.modules))\n"
        "import twitter_text\n"
        "print(twitter_text.parse_tweet('https://example.org ✊🏽').weightedLength)\n"
        "from twitter_text import extract_emojis_with_indices as e\n"
        "print(e('a ✊🏽'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "[(4, 25, 'https://example.org/a')]",
        "False",
        "[(4, 25, 'https://example.org/a')]",
        "[]",
        "26",
        "[{'emoji': '✊🏽', 'indices': [2, 4]}]",
    ]


def _whole_text_urls(text: str) -> list[tuple[int, int, str]]:
    from twitter_text.extract_urls import extract_urls_with_indices

    found = extract_urls_with_indices(text, extract_urls_without_protocol=False)
    return [(u["indices"][0], u["indices"][1], u["url"]) for u in found]


def test_url_spans_word_by_word_match_the_whole_text() -> None:
    """url_spans runs twitter-text on the words with "://" only: the same URLs as running it
    on the whole text, for every text of twitter-text's extraction conformance and for
    random texts made of their pieces and hostile joins."""
    import random

    groups = yaml.safe_load(shared_file("twitter-text/conformance/extract.yml").read_text())
    texts = [case["text"] for cases in groups["tests"].values() for case in cases]
    assert len(texts) > 200
    checked_urls = 0
    for text in texts:
        expected = _whole_text_urls(text)
        assert counting.url_spans(text) == expected, text
        checked_urls += len(expected)
    assert checked_urls > 50
    rng = random.Random(15)
    pieces = [w for t in texts for w in t.split(" ")] + ["", "://", "(", ")", ".", "\n", "\t"]
    pieces += ["https://example.org/a_(b)", "http://t.co/abc", "x.com", "#tag", "@who", "✊🏽"]
    for _ in range(3000):
        text = rng.choice(["", " ", "\n"]).join(
            rng.choice(pieces) for _ in range(rng.randint(1, 9))
        )
        assert counting.url_spans(text) == _whole_text_urls(text), repr(text)


def test_plain_links_are_found_as_twitter_text_finds_them() -> None:
    """url_spans takes a plain link (lower-case host, a listed TLD, a simple path) as one URL
    without asking twitter-text: the same spans as twitter-text on the whole text, for every
    listed TLD and for random words near the edge of "plain" (case, "--", long labels, a
    query, trailing punctuation, t.co, unlisted TLDs), most of which are not plain."""
    import random

    for tld in counting.PLAIN_TLDS:
        text = f"read https://news.example.{tld}/a-b_c/1 now"
        assert counting.url_spans(text) == _whole_text_urls(text) != [], tld
    rng = random.Random(2026)
    near_plain = ("abcxyz019-" * 3 + "_AZé", "abz09_-/" * 4 + ".,;:!?()=#&%+~'éЖ")
    only_plain = ("abcxyz019-", "abz09_-/")
    tlds = [*counting.PLAIN_TLDS, "co", "xyz", "zz", "ORG", "c0m", "onion", "pe1", ""]
    plain = 0
    for _ in range(20_000):
        label_chars, path_chars = rng.choice([near_plain, only_plain])
        labels = [
            "".join(rng.choice(label_chars) for _ in range(rng.choice([0, 1, 2, 5, 62, 63, 64])))
            for _ in range(rng.randint(1, 3))
        ]
        host = ".".join([*labels, rng.choice(tlds)])
        path = ""
        if rng.random() < 0.7:
            path = "/" + "".join(rng.choice(path_chars) for _ in range(rng.randint(0, 12)))
        scheme = rng.choice(["https", "http", "https", "HTTPS", "ftp"])
        word = f"{scheme}://{host}{path}"
        text = rng.choice(["", "see ", "(", "\n"]) + word + rng.choice(["", " now", ".", "\t#x"])
        plain += bool(counting._PLAIN_URL.fullmatch(word))
        assert counting.url_spans(text) == _whole_text_urls(text), repr(text)
    assert plain > 1_000, plain  # the plain path itself was exercised, not only the fallback
