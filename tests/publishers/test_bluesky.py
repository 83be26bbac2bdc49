"""Bluesky publisher units: rich-text vectors, record keys, lexicons, sessions, errors.

The XRPC server here is an ``httpx.MockTransport`` following the documented endpoints; the
real one is exercised in test_bluesky_pds.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import io
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from postscheduler.config import load_settings
from postscheduler.ledger import DeliveryKey
from postscheduler.platforms.bluesky import detect_facets, display_links, short_url
from postscheduler.posts.models import Image
from postscheduler.publishers import (
    OutcomeUnknownError,
    PermanentError,
    Published,
    PublishJob,
    Resolution,
    TransientError,
    make_publisher,
)
from postscheduler.publishers.bluesky import (
    BlueskyPublisher,
    created_at,
    is_tid,
    make_tid,
    tid_micros,
)

from ..conftest import shared_file
from ..lexicon import LexiconError, Lexicons
from .jobs import make_job

PASSWORD = "canary-bluesky-app-password-7f3e"
DID = "did:plc:alice000000000000000000"
BOB = "did:plc:bob00000000000000000000"


def _vectors(group: str) -> list[dict[str, Any]]:
    data = json.loads(shared_file("bluesky/richtext-vectors.json").read_text())
    return list(data[group])


def _features(text: str) -> list[tuple[int, int, str]]:
    out = []
    for facet in detect_facets(text):
        feature = facet["features"][0]
        value = feature.get("uri") or feature.get("tag") or f"did:fake:{feature.get('handle')}"
        out.append((facet["index"]["byteStart"], facet["index"]["byteEnd"], value))
    return out


# --- rich text: the upstream detection vectors ------------------------------------------------


def test_mentions_and_links_match_bluesky_detection() -> None:
    # Upstream resolves every handle to did:fake:<handle> in these tests.
    for case in _vectors("detect_mentions_and_links"):
        expected = [
            (f["byteStart"], f["byteEnd"], f["feature"].get("uri") or f["feature"]["did"])
            for f in case["expected_facets"]
        ]
        got = [item for item in _features(case["text"]) if not item[2].startswith("#")]
        assert got == expected, case["text"]


@pytest.mark.parametrize("group", ["detect_tags", "detect_cashtags"])
def test_hashtags_and_cashtags_match_bluesky_detection(group: str) -> None:
    for case in _vectors(group):
        got = [
            (f["features"][0]["tag"], f["index"])
            for f in detect_facets(case["text"])
            if f["features"][0]["$type"].endswith("#tag")
        ]
        assert got == list(zip(case["expected_tags"], case["expected_indices"], strict=True)), case[
            "text"
        ]


def test_facet_byte_ranges_select_the_text_they_mean() -> None:
    text = "Solidarität ✊🏽 mit @bob.test: https://example.org/peru?x=1. #Perú"
    data = text.encode()
    spans = [data[s:e].decode() for s, e, _ in _features(text)]
    assert spans == ["@bob.test", "https://example.org/peru?x=1", "#Perú"]


def test_links_are_shown_short_as_bluesky_shows_them() -> None:
    assert short_url("https://example.org/") == "example.org"
    assert short_url("https://example.org/video/1") == "example.org/video/1"
    assert short_url("https://www.example.org/2023/01/peru-solidarity?x=1#top") == (
        "www.example.org/2023/01/peru..."
    )
    assert short_url("http://127.0.0.1:8080/a/b/c/d/e/f/g/h") == "127.0.0.1:8080/a/b/c/d/e/f/..."
    text = "Read 🇵🇪 https://example.org/2023/01/peru-solidarity, then example.org/x."
    shown, links = display_links(text, shorten=True)
    assert shown == "Read 🇵🇪 example.org/2023/01/peru..., then example.org/x."
    data = shown.encode()
    assert [(data[a:b].decode(), uri) for a, b, uri in links] == [
        ("example.org/2023/01/peru...", "https://example.org/2023/01/peru-solidarity"),
        ("example.org/x", "https://example.org/x"),
    ]
    assert display_links(text, shorten=False) == (
        text,
        (
            (14, 57, "https://example.org/2023/01/peru-solidarity"),
            (64, 77, "https://example.org/x"),
        ),
    )


# --- record keys ------------------------------------------------------------------------------


def _syntax(name: str) -> list[str]:
    path = shared_file(f"bluesky/atproto-interop-tests/syntax/{name}")
    return [
        line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_tids_follow_the_atproto_syntax_vectors() -> None:
    assert all(is_tid(v) for v in _syntax("tid_syntax_valid.txt"))
    assert not any(is_tid(v) for v in _syntax("tid_syntax_invalid.txt"))
    micros = int(dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC).timestamp() * 1_000_000)
    tid = make_tid(micros, 1023)
    assert is_tid(tid) and tid_micros(tid) == micros
    assert created_at(tid) == "2027-01-14T09:00:00.000Z"
    assert make_tid(micros, 0) < make_tid(micros + 1, 0)  # sortable by time


def test_identities_are_distinct_even_at_one_instant(tmp_path: Path) -> None:
    publisher = _publisher(tmp_path, _Xrpc())
    now = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)
    keys = [DeliveryKey(f"p{i}", "sky", part) for i in range(50) for part in range(3)]
    tids = [publisher.identity(key, now) for key in keys]
    assert len(set(tids)) == len(tids) and all(is_tid(t) for t in tids)


def test_a_delivery_claimed_with_another_identity_still_gets_a_stable_key(
    tmp_path: Path,
) -> None:
    server = _Xrpc()
    job = _job("Claimed before Bluesky publishing existed.", identity="postscheduler-0123abcd")
    asyncio.run(_publish(tmp_path, server, job))
    asyncio.run(_publish(tmp_path, server, job))
    (rkey,) = server.records
    assert is_tid(rkey)


# --- a documented XRPC server in a MockTransport --------------------------------------------


def _jwt(kind: str, n: int, ttl: float) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part({'sub': DID, 'exp': time.time() + ttl})}.{kind}{n}"


class _Xrpc:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, list[httpx.Response | Exception]] = {}
        self.issued = 0
        self.valid_access: set[str] = set()
        self.valid_refresh: set[str] = set()
        self.access_ttl = 7200.0
        self.pages: dict[str, tuple[str, bytes]] = {}

    def _session(self) -> httpx.Response:
        self.issued += 1
        access, refresh = _jwt("a", self.issued, self.access_ttl), _jwt("r", self.issued, 9e6)
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        body = {"did": DID, "handle": "alice.test", "accessJwt": access, "refreshJwt": refresh}
        return httpx.Response(200, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.1" and request.url.path in self.pages:
            kind, body = self.pages[request.url.path]
            return httpx.Response(200, headers={"content-type": kind}, content=body)
        nsid = request.url.path.rsplit("/", 1)[-1]
        self.calls.append(nsid)
        if self.faults.get(nsid):
            fault = self.faults[nsid].pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if nsid == "com.atproto.server.createSession":
            if json.loads(request.content)["password"] != PASSWORD:
                return _error(401, "AuthenticationRequired", "Invalid identifier or password")
            return self._session()
        if nsid == "com.atproto.server.refreshSession":
            if bearer not in self.valid_refresh:
                return _error(400, "ExpiredToken", "Token has expired")
            self.valid_refresh.discard(bearer)
            return self._session()
        if nsid == "com.atproto.identity.resolveHandle":
            handle = request.url.params["handle"]
            if handle == "bob.test":
                return httpx.Response(200, json={"did": BOB})
            return _error(400, "InvalidRequest", "Unable to resolve handle")
        if nsid == "com.atproto.repo.getRecord":
            rkey = request.url.params["rkey"]
            if rkey not in self.records:
                return _error(400, "RecordNotFound", "Could not locate record")
            return httpx.Response(200, json=self._stored(rkey))
        if bearer not in self.valid_access:
            return _error(400, "ExpiredToken", "Token has expired")
        if nsid == "com.atproto.server.getSession":
            return httpx.Response(200, json={"did": DID, "handle": "alice.test"})
        if nsid == "com.atproto.repo.uploadBlob":
            blob = {
                "$type": "blob",
                "ref": {"$link": f"bafkrei{len(request.content):040d}"},
                "mimeType": request.headers["content-type"],
                "size": len(request.content),
            }
            return httpx.Response(200, json={"blob": blob})
        if nsid == "com.atproto.repo.putRecord":
            body = json.loads(request.content)
            assert body["swapRecord"] is None and body["collection"] == "app.bsky.feed.post"
            rkey = body["rkey"]
            if rkey in self.records and self.records[rkey] != body["record"]:
                return _error(400, "InvalidSwap", "Record was at bafyreiother")
            self.records[rkey] = body["record"]
            return httpx.Response(200, json=self._stored(rkey))
        return _error(501, "MethodNotImplemented", nsid)

    def _stored(self, rkey: str) -> dict[str, Any]:
        uri = f"at://{DID}/app.bsky.feed.post/{rkey}"
        return {"uri": uri, "cid": f"bafyrei{rkey}", "value": self.records[rkey]}


def _error(status: int, error: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "message": message}, headers=headers)


CONFIG = """\
timezone: UTC
ledger: state/ledger.db
link_cards: {allow_private_addresses: true}
accounts:
  sky: {platform: bluesky, service: "https://pds.example", handle: alice.test,
        app_password: "${BSKY_PASSWORD}", language: en}
"""


def _publisher(root: Path, server: _Xrpc, http: httpx.AsyncClient | None = None) -> Any:
    (root / "scheduler.yaml").write_text(CONFIG)
    (root / "posts").mkdir(exist_ok=True)
    settings = load_settings(root / "scheduler.yaml", environ={"BSKY_PASSWORD": PASSWORD})
    http = http or httpx.AsyncClient(transport=httpx.MockTransport(server))
    publisher = make_publisher("sky", settings, http=http)
    assert isinstance(publisher, BlueskyPublisher)
    return publisher


_serial = itertools.count()


def _job(text: str, **changes: Any) -> PublishJob:
    key = DeliveryKey("p", "sky", changes.pop("part", 0))
    base = make_job("sky", text)
    changes.setdefault("identity", make_tid(int(time.time() * 1e6) + next(_serial), 7))
    return dataclasses.replace(base, key=key, **changes)


async def _publish(root: Path, server: _Xrpc, *jobs: PublishJob) -> list[Published]:
    publisher = _publisher(root, server)
    try:
        return [await publisher.publish(job) for job in jobs]
    finally:
        await publisher.http.aclose()


def _jpeg(size: tuple[int, int] = (800, 450)) -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("RGB", size, (30, 90, 160)).save(out, "JPEG")
    return out.getvalue()


# --- records against the lexicons ---------------------------------------------------------


@pytest.fixture
def lexicons() -> Lexicons:
    return Lexicons(shared_file("bluesky/lexicons"))


def test_published_records_are_valid_posts(tmp_path: Path, lexicons: Lexicons) -> None:
    server = _Xrpc()
    photo = tmp_path / "posts" / "photo.jpg"
    photo.parent.mkdir()
    photo.write_bytes(_jpeg())
    server.pages = {
        "/article": (
            "text/html",
            b'<head><meta property="og:title" content="Peru"><meta property="og:image" '
            b'content="/card.jpg"></head>',
        ),
        "/card.jpg": ("image/jpeg", _jpeg((1200, 630))),
    }
    link = "http://127.0.0.1:8/article"
    image = Image(file="photo.jpg", alt="Marchers in Juliaca.", credit="Kawsachun News")
    first = _job(f"Thanks @bob.test! Read {link} #Peru", link=link)
    with_image = _job("A photo.\n\n📷 Kawsachun News", image=image, image_path=str(photo))
    published = asyncio.run(_publish(tmp_path, server, first, with_image))
    reply = _job("A reply.", part=1, reply_to=published[0], root=published[0])
    asyncio.run(_publish(tmp_path, server, reply))

    records = list(server.records.values())
    for record in records:
        lexicons.validate_record("app.bsky.feed.post", record)
    card, photo_post, answer = records
    assert card["embed"]["external"]["title"] == "Peru"
    assert card["embed"]["external"]["thumb"]["mimeType"] == "image/jpeg"
    assert [f["features"][0]["$type"].rsplit("#")[1] for f in card["facets"]] == [
        "mention",
        "link",
        "tag",
    ]
    assert card["facets"][0]["features"][0]["did"] == BOB
    assert card["langs"] == ["en"]
    assert photo_post["embed"]["images"][0]["aspectRatio"] == {"width": 800, "height": 450}
    assert answer["reply"]["root"] == answer["reply"]["parent"]
    assert answer["reply"]["root"]["uri"] == published[0].remote_id


def test_the_lexicon_checker_is_not_vacuous(lexicons: Lexicons) -> None:
    post = {
        "$type": "app.bsky.feed.post",
        "text": "🦋" * 301,
        "createdAt": created_at("3kzzzzzzzzzzz"),
    }
    with pytest.raises(LexiconError, match="300 graphemes"):
        lexicons.validate_record("app.bsky.feed.post", post)
    post["text"] = "ok"
    post["embed"] = {"$type": "app.bsky.embed.images", "images": [{"image": {}}]}
    with pytest.raises(LexiconError, match="alt"):
        lexicons.validate_record("app.bsky.feed.post", post)


# --- sessions ---------------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed_once_and_the_post_sent_once(
    tmp_path: Path,
) -> None:
    server = _Xrpc()
    server.access_ttl = 10_000
    job = _job("Hello.")
    publisher = _publisher(tmp_path, server)

    async def go() -> Published:
        await publisher.check_credentials()
        server.valid_access.clear()  # the server expires it early
        return await publisher.publish(job)

    asyncio.run(go())
    assert server.calls.count("com.atproto.server.createSession") == 1
    assert server.calls.count("com.atproto.server.refreshSession") == 1
    assert len(server.records) == 1


def test_a_token_about_to_expire_is_renewed_before_use(tmp_path: Path) -> None:
    server = _Xrpc()
    server.access_ttl = 60  # inside the renewal margin
    publisher = _publisher(tmp_path, server)

    async def go() -> None:
        await publisher.check_credentials()
        await publisher.check_credentials()

    asyncio.run(go())
    assert server.calls.count("com.atproto.server.createSession") == 1
    assert server.calls.count("com.atproto.server.refreshSession") == 1


def test_wrong_app_password_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = _Xrpc()
    publisher = _publisher(tmp_path, server)
    publisher.env = {"BSKY_PASSWORD": "canary-wrong-" + PASSWORD}
    with pytest.raises(PermanentError) as err:
        asyncio.run(publisher.check_credentials())
    assert "AuthenticationRequired" in err.value.message
    assert "app password" in err.value.message
    assert PASSWORD not in err.value.message + caplog.text
    assert not (tmp_path / "state" / "bluesky-sky.session").exists()


# --- errors -----------------------------------------------------------------------------------


def _fails_with(tmp_path: Path, fault: httpx.Response | Exception) -> Exception:
    server = _Xrpc()
    server.faults["com.atproto.repo.putRecord"] = [fault]
    with pytest.raises((TransientError, PermanentError, OutcomeUnknownError)) as err:
        asyncio.run(_publish(tmp_path, server, _job("Hello.")))
    assert not server.records
    return err.value


def test_rate_limit_waits_until_the_reset(tmp_path: Path) -> None:
    reset = str(int(time.time()) + 120)
    err = _fails_with(
        tmp_path, _error(429, "RateLimitExceeded", "Slow down", **{"RateLimit-Reset": reset})
    )
    assert isinstance(err, TransientError) and err.retry_after is not None
    assert 100 < err.retry_after <= 120


def test_server_errors_are_transient(tmp_path: Path) -> None:
    err = _fails_with(tmp_path, _error(502, "UpstreamFailure", "try later"))
    assert isinstance(err, TransientError) and "UpstreamFailure" in err.message


def test_invalid_records_are_permanent_with_the_servers_words(tmp_path: Path) -> None:
    err = _fails_with(
        tmp_path, _error(400, "InvalidRequest", "Invalid app.bsky.feed.post record: text too long")
    )
    assert isinstance(err, PermanentError) and "text too long" in err.message


def test_a_lost_answer_is_an_unknown_outcome_that_is_safe_to_resend(tmp_path: Path) -> None:
    err = _fails_with(tmp_path, httpx.ReadTimeout("lost"))
    assert isinstance(err, OutcomeUnknownError)
    assert BlueskyPublisher.idempotent


def test_a_key_holding_another_post_is_never_reported_as_this_one(tmp_path: Path) -> None:
    server = _Xrpc()
    job = _job("Mine.")
    other = {"$type": "app.bsky.feed.post", "text": "Mine.", "createdAt": "2020-01-01T00:00:00Z"}
    server.records[job.identity] = other
    with pytest.raises(PermanentError, match="did not make"):
        asyncio.run(_publish(tmp_path, server, job))


def test_a_post_edited_while_in_doubt_is_reported_sent_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = _Xrpc()
    job = _job("The first words.")
    (first,) = asyncio.run(_publish(tmp_path, server, job))
    edited = dataclasses.replace(job, text="The edited words.")

    async def resolve() -> Published | Resolution:
        return await _publisher(tmp_path, server).resolve_in_doubt(edited)

    assert asyncio.run(resolve()) == first
    assert "before its post file was edited" in caplog.text
    assert [r["text"] for r in server.records.values()] == ["The first words."]


def test_in_doubt_deliveries_are_looked_up(tmp_path: Path) -> None:
    server = _Xrpc()
    job = _job("Maybe sent.")

    async def resolve() -> Published | Resolution:
        return await _publisher(tmp_path, server).resolve_in_doubt(job)

    assert asyncio.run(resolve()) is Resolution.NOT_SENT
    (published,) = asyncio.run(_publish(tmp_path, server, job))
    assert asyncio.run(resolve()) == published


def test_an_unresolvable_mention_stays_text_but_an_outage_is_retried(tmp_path: Path) -> None:
    server = _Xrpc()
    asyncio.run(_publish(tmp_path, server, _job("Hi @nobody.test and @bob.test")))
    (record,) = server.records.values()
    assert [f["features"][0]["did"] for f in record["facets"]] == [BOB]

    server = _Xrpc()
    server.faults["com.atproto.identity.resolveHandle"] = [_error(503, "Unavailable", "")]
    with pytest.raises(TransientError):
        asyncio.run(_publish(tmp_path, server, _job("Hi @bob.test")))
    assert not server.records


def test_a_card_that_cannot_be_fetched_leaves_the_link_as_a_facet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = _Xrpc()
    link = "http://127.0.0.1:8/missing"
    asyncio.run(_publish(tmp_path, server, _job(f"Read {link}", link=link)))
    (record,) = server.records.values()
    assert "embed" not in record
    assert record["facets"][0]["features"][0]["uri"] == link
    assert "without a link card" in caplog.text
