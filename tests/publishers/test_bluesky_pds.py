"""Bluesky against the real AT Protocol PDS on 127.0.0.1 (tests/bluesky_pds.py).

The PDS validates every record against the official lexicons, as bsky.social does; what it
stores is read back with getRecord and checked field by field.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import http.server
import io
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from postscheduler.config import load_settings
from postscheduler.delivery.daemon import run_once
from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.publishers import Published, make_publisher

from ..bluesky_pds import PDS
from ..conftest import PROJECT_ROOT
from .jobs import make_job

ARTICLE_PATH = "/2023/01/peru-solidarity-with-the-struggle-for-democracy"
VIDEO_PATH = "/video/peru-solidarity-with-the-struggle-for-democracy"
CANARY = "canary-app-password-for-alice"


def _og_image() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (600, 315), (200, 30, 40)).save(out, "JPEG")
    return out.getvalue()


class _Site(http.server.BaseHTTPRequestHandler):
    """The campaign's web site: an article and a video page with OpenGraph tags."""

    pages: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_GET(self) -> None:
        kind, body = self.pages.get(self.path, ("text/plain", b"not found"))
        self.send_response(200 if self.path in self.pages else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _page(title: str, description: str, image: str | None) -> bytes:
    image_tag = f'<meta property="og:image" content="{image}">' if image else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Site title</title>"
        f'<meta property="og:title" content="{title}">'
        f'<meta property="og:description" content="{description}">{image_tag}'
        "</head><body><p>Article</p></body></html>"
    ).encode()


@contextlib.contextmanager
def serve_site() -> Iterator[str]:
    """The campaign's web site on a free loopback port: its base URL."""
    _Site.pages = {
        ARTICLE_PATH: (
            "text/html; charset=utf-8",
            _page(
                "Peru: Solidarity with the Struggle for Democracy",
                "Hundreds joined the online event &amp; called for fresh elections.",
                "/images/og.jpg",
            ),
        ),
        VIDEO_PATH: ("text/html", _page("WATCH: the full meeting", "Video", None)),
        "/images/og.jpg": ("image/jpeg", _og_image()),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_site() as url:
        yield url


@dataclasses.dataclass
class Campaign:
    root: Path
    pds: PDS
    site: str
    env: dict[str, str]

    def settings(self) -> Any:
        return load_settings(self.root / "scheduler.yaml", environ=self.env)


def _campaign(tmp_path: Path, pds: PDS, site: str) -> Campaign:
    """The example campaign of posts/, its links pointed at the loopback site."""
    root = tmp_path / "campaign"
    shutil.copytree(PROJECT_ROOT / "posts", root / "posts")
    for path in (root / "posts").glob("*.yaml"):
        path.write_text(path.read_text().replace("https://example.org", site))
    (root / "scheduler.yaml").write_text(
        "timezone: Europe/London\n"
        "ledger: .postscheduler/ledger.db\n"
        "link_cards: {allow_private_addresses: true, timeout: 5s}\n"
        "publishing: {late_grace: 365d}\n"
        "accounts:\n"
        f"  sky: {{platform: bluesky, service: '{pds.url}', handle: {pds.handle}, "
        "app_password: '${BSKY_APP_PASSWORD}'}\n"
        "defaults: {accounts: [sky]}\n"
    )
    return Campaign(root, pds, site, {"BSKY_APP_PASSWORD": pds.password})


def _publish_all(campaign: Campaign) -> Any:
    when = dt.datetime(2027, 2, 1, 12, 0, tzinfo=dt.UTC)
    return asyncio.run(run_once(campaign.settings(), clock=lambda: when))


def _by_post(campaign: Campaign) -> dict[tuple[str, int], Any]:
    with SqliteLedger(campaign.root / ".postscheduler" / "ledger.db") as ledger:
        return {(d.key.post_id, d.key.part): d for d in ledger.deliveries()}


def _facet_texts(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    data = record["text"].encode()
    return [
        (data[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"][0])
        for f in record.get("facets", [])
    ]


def test_the_example_campaign_reads_back_from_the_pds(
    tmp_path: Path, bluesky_pds: PDS, site: str
) -> None:
    pds = bluesky_pds
    bob = f"bob{tmp_path.name[-6:].lower().replace('_', '')}.test"
    bob_did = pds.create_account(bob)
    campaign = _campaign(tmp_path, pds, site)
    (campaign.root / "posts" / "thanks.yaml").write_text(
        "id: thanks\nat: 2027-01-20 10:00\n"
        f"text: 'Thank you @{bob} and @nobody-here.test for standing with Peru ✊🏽 #Solidarität'\n"
    )
    before = {r["uri"] for r in pds.list_records()}
    report = _publish_all(campaign)
    rows = _by_post(campaign)
    assert report.errors == 0
    assert {r.state for r in rows.values()} == {DeliveryState.PUBLISHED}, rows
    assert len(rows) == 11  # 6 posts of the pack and watch, 4 thread parts, the thanks

    records = {r["uri"]: r for r in pds.list_records() if r["uri"] not in before}
    assert len(records) == len(rows)  # one record per delivery: nothing twice
    value = {key: records[row.remote_id]["value"] for key, row in rows.items()}
    for key, row in rows.items():  # getRecord agrees with listRecords
        assert pds.get_record(row.remote_id)["value"] == value[key]

    # The article: image with alt and aspect ratio, the credit in the text, link + tag facets.
    article = value[("peru-article", 0)]
    assert article["text"].endswith("\n\n📷 Kawsachun News/twitter")
    (image,) = article["embed"]["images"]
    assert image["alt"].startswith("Market vendors in Juliaca")
    assert image["aspectRatio"] == {"width": 1200, "height": 675}
    assert image["image"]["mimeType"] == "image/jpeg"
    assert article["langs"] == ["en"]
    # The link is shown short, as Bluesky's app shows it; its facet holds the whole URL.
    shown = site.removeprefix("http://") + ARTICLE_PATH[:13] + "..."
    assert f"\n\n{shown}\n\n" in article["text"]
    assert _facet_texts(article) == [
        (shown, {"$type": "app.bsky.richtext.facet#link", "uri": site + ARTICLE_PATH})
    ]

    # A quote post of the pack: the article as a link card, its image as the thumb.
    quote = value[("peru-willgress-quote", 0)]
    card = quote["embed"]["external"]
    assert quote["embed"]["$type"] == "app.bsky.embed.external"
    assert card["uri"] == site + ARTICLE_PATH
    assert card["title"] == "Peru: Solidarity with the Struggle for Democracy"
    assert card["description"] == "Hundreds joined the online event & called for fresh elections."
    assert card["thumb"]["mimeType"] == "image/jpeg"
    assert value[("peru-watch", 0)]["embed"]["external"]["title"] == "WATCH: the full meeting"
    assert "thumb" not in value[("peru-watch", 0)]["embed"]["external"]

    # The thread: every reply points at the first part as root and the previous as parent.
    root = {"uri": rows[("peru-thread", 0)].remote_id}
    root["cid"] = pds.get_record(root["uri"])["cid"]
    assert "reply" not in value[("peru-thread", 0)]
    for part in (1, 2, 3):
        parent_uri = rows[("peru-thread", part - 1)].remote_id
        reply = value[("peru-thread", part)]["reply"]
        assert reply["root"] == root
        assert reply["parent"] == {"uri": parent_uri, "cid": pds.get_record(parent_uri)["cid"]}
    assert ("#Peru", {"$type": "app.bsky.richtext.facet#tag", "tag": "Peru"}) in _facet_texts(
        value[("peru-thread", 0)]
    )
    assert _facet_texts(value[("peru-thread", 3)])[-1] == (
        shown,
        {"$type": "app.bsky.richtext.facet#link", "uri": site + ARTICLE_PATH},
    )

    # The mention: resolved to bob's DID; a handle that resolves nowhere stays plain text.
    thanks = value[("thanks", 0)]
    assert _facet_texts(thanks) == [
        (f"@{bob}", {"$type": "app.bsky.richtext.facet#mention", "did": bob_did}),
        ("#Solidarität", {"$type": "app.bsky.richtext.facet#tag", "tag": "Solidarität"}),
    ]

    # Publishing the campaign again sends nothing: the ledger knows, and the PDS agrees.
    _publish_all(campaign)
    assert len([r for r in pds.list_records() if r["uri"] not in before]) == len(rows)


def test_session_is_kept_private_and_refreshed_not_relogged(
    tmp_path: Path, bluesky_pds: PDS, site: str, caplog: pytest.LogCaptureFixture
) -> None:
    campaign = _campaign(tmp_path, bluesky_pds, site)
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.url.path.rsplit("/", 1)[-1])

    async def check() -> str:
        async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
            publisher = make_publisher("sky", campaign.settings(), http=http)
            return await publisher.check_credentials()

    caplog.set_level("DEBUG")
    assert asyncio.run(check()) == f"@{bluesky_pds.handle} ({bluesky_pds.did})"
    assert seen == ["com.atproto.server.createSession", "com.atproto.server.getSession"]
    session_file = campaign.root / ".postscheduler" / "bluesky-sky.session"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    first = session_file.read_text()

    seen.clear()  # a restart (or `run --once` from cron): the stored session, no login
    assert asyncio.run(check()).startswith("@")
    assert seen == ["com.atproto.server.getSession"]

    stored = json.loads(first)
    stored["accessJwt"] = "not-a-valid-token"
    session_file.write_text(json.dumps(stored))
    seen.clear()  # the access token refused: renewed with the refresh token, not a login
    assert asyncio.run(check()).startswith("@")
    assert seen == [
        "com.atproto.server.getSession",
        "com.atproto.server.refreshSession",
        "com.atproto.server.getSession",
    ]
    renewed = json.loads(session_file.read_text())
    assert renewed["refreshJwt"] != stored["refreshJwt"]  # rotated, and the new one kept

    renewed["accessJwt"] = renewed["refreshJwt"] = "revoked"
    session_file.write_text(json.dumps(renewed))
    seen.clear()  # both refused: log in again
    assert asyncio.run(check()).startswith("@")
    assert seen[-2:] == ["com.atproto.server.createSession", "com.atproto.server.getSession"]
    assert bluesky_pds.password not in session_file.read_text()


def test_wrong_app_password_is_a_clear_permanent_error(
    tmp_path: Path, bluesky_pds: PDS, site: str
) -> None:
    from postscheduler.errors import PermanentError

    campaign = _campaign(tmp_path, bluesky_pds, site)
    campaign.env["BSKY_APP_PASSWORD"] = CANARY

    async def check() -> str:
        async with httpx.AsyncClient() as http:
            return await make_publisher("sky", campaign.settings(), http=http).check_credentials()

    with pytest.raises(PermanentError) as err:
        asyncio.run(check())
    assert "401" in err.value.message and "app password" in err.value.message
    assert CANARY not in err.value.message


def test_a_resend_after_a_lost_answer_is_the_same_post(
    tmp_path: Path, bluesky_pds: PDS, site: str
) -> None:
    campaign = _campaign(tmp_path, bluesky_pds, site)
    before = len(bluesky_pds.list_records())

    async def go() -> tuple[Published, Published, Published, Any]:
        async with httpx.AsyncClient() as http:
            publisher = make_publisher("sky", campaign.settings(), http=http)
            key = DeliveryKey("lost", "sky", 0)
            job = dataclasses.replace(
                make_job("sky", "Sent once, whatever happens. #Peru"),
                key=key,
                identity=publisher.identity(key, dt.datetime.now(dt.UTC)),
            )
            first = await publisher.publish(job)
            again = await publisher.publish(job)  # identical record: a no-op on the PDS
            fresh = make_publisher("sky", campaign.settings(), http=http)  # after a restart
            in_doubt = await fresh.resolve_in_doubt(job)
            # A resend whose record came out different (a link card fetched differently):
            # the key already holds the first record, which is what gets reported.
            changed = dataclasses.replace(job, link=site + ARTICLE_PATH)
            third = await fresh.publish(changed)
            return first, again, third, in_doubt

    first, again, third, in_doubt = asyncio.run(go())
    assert first == again == third == in_doubt
    assert len(bluesky_pds.list_records()) == before + 1


# --- crashes --------------------------------------------------------------------------------


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the PDS; while ``hold`` is set, a putRecord reaches the PDS but its answer
    is held back until ``release``: the daemon dies between the write and the response."""

    target = ""
    hold = threading.Event()
    landed = threading.Event()
    release = threading.Event()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        answer = httpx.request(
            self.command, self.target + self.path, headers=headers, content=body, timeout=30
        )
        if self.hold.is_set() and self.path.endswith("com.atproto.repo.putRecord"):
            self.landed.set()
            self.release.wait(60)
            return  # the caller is gone; it never learns the outcome
        self.send_response(answer.status_code)
        for name in ("content-type", "ratelimit-reset"):
            if name in answer.headers:
                self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = _forward  # noqa: N815 - the http.server API

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(bluesky_pds: PDS) -> Iterator[str]:
    _Proxy.target = bluesky_pds.url
    for event in (_Proxy.hold, _Proxy.landed, _Proxy.release):
        event.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Proxy.release.set()
    server.shutdown()
    server.server_close()


def _daemon_project(tmp_path: Path, service: str, pds: PDS, texts: list[str]) -> Path:
    root = tmp_path / "daemon"
    (root / "posts").mkdir(parents=True)
    (root / "scheduler.yaml").write_text(
        "timezone: UTC\nledger: state/ledger.db\n"
        "publishing: {retry: {attempts: 5, first_delay: 1s, max_delay: 2s}}\n"
        f"accounts:\n  sky: {{platform: bluesky, service: '{service}', handle: {pds.handle}, "
        "app_password: '${BSKY_APP_PASSWORD}'}\n"
        "defaults: {accounts: [sky]}\n"
    )
    due = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat(timespec="seconds")
    first, *replies = texts
    thread = "".join(f"  - {json.dumps(t)}\n" for t in replies)
    (root / "posts" / "p.yaml").write_text(
        f"id: p\nat: {due}\ntext: {json.dumps(first)}\n" + (f"thread:\n{thread}" if thread else "")
    )
    return root


def _postscheduler(root: Path, *args: str, pds: PDS) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "postscheduler", *args, "-c", str(root / "scheduler.yaml")],
        env={**os.environ, "BSKY_APP_PASSWORD": pds.password},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _rows(root: Path) -> list[Any]:
    with SqliteLedger(root / "state" / "ledger.db") as ledger:
        return sorted(ledger.deliveries(), key=lambda d: d.key.part)


def _texts_on_pds(pds: PDS) -> collections.Counter[str]:
    return collections.Counter(r["value"]["text"] for r in pds.list_records())


def test_killed_between_the_write_and_its_answer_recovers_without_a_duplicate(
    tmp_path: Path, bluesky_pds: PDS, proxy: str
) -> None:
    texts = [f"Crash {tmp_path.name}: part {i}" for i in (1, 2, 3)]
    root = _daemon_project(tmp_path, proxy, bluesky_pds, texts)
    _Proxy.hold.set()
    daemon = _postscheduler(root, "run", pds=bluesky_pds)
    assert _Proxy.landed.wait(60), "the first part never reached the PDS"
    daemon.send_signal(signal.SIGKILL)
    daemon.communicate()
    first = _rows(root)[0]
    assert first.state is DeliveryState.SENDING  # in doubt: written on the PDS, not in the ledger
    assert _texts_on_pds(bluesky_pds)[texts[0]] == 1

    _Proxy.hold.clear()
    _Proxy.release.set()
    settle = _postscheduler(root, "run", "--once", pds=bluesky_pds)
    _, err = settle.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    rows = _rows(root)
    assert [r.state for r in rows] == [DeliveryState.PUBLISHED] * 3, rows
    counts = _texts_on_pds(bluesky_pds)
    assert [counts[t] for t in texts] == [1, 1, 1]
    # The recovered first part is the root the replies point at.
    for row in rows[1:]:
        reply = bluesky_pds.get_record(row.remote_id)["value"]["reply"]
        assert reply["root"]["uri"] == rows[0].remote_id


@pytest.mark.slow
def test_kill_9_at_random_moments_never_duplicates(tmp_path: Path, bluesky_pds: PDS) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20270114")))
    outcomes: collections.Counter[str] = collections.Counter()
    for trial in range(6):
        texts = [f"Trial {trial} {tmp_path.name}: part {i}" for i in (1, 2, 3, 4)]
        root = _daemon_project(tmp_path / f"t{trial}", bluesky_pds.url, bluesky_pds, texts)
        daemon = _postscheduler(root, "run", pds=bluesky_pds)
        time.sleep(rng.uniform(0.4, 1.4))  # during start-up, login, or the thread
        daemon.send_signal(signal.SIGKILL)
        daemon.communicate()
        if (root / "state" / "ledger.db").exists():
            outcomes.update(r.state.value for r in _rows(root))
        settle = _postscheduler(root, "run", "--once", pds=bluesky_pds)
        _, err = settle.communicate(timeout=120)
        assert b"Traceback" not in err, err.decode()
        assert [r.state for r in _rows(root)] == [DeliveryState.PUBLISHED] * 4
        counts = _texts_on_pds(bluesky_pds)
        assert [counts[t] for t in texts] == [1, 1, 1, 1], counts
    print(f"\nstates at the kill: {dict(outcomes)}")


def test_validate_online_warns_about_mentions_that_resolve_nowhere(
    tmp_path: Path, bluesky_pds: PDS, site: str
) -> None:
    from typer.testing import CliRunner

    from postscheduler.cli import app

    campaign = _campaign(tmp_path, bluesky_pds, site)
    (campaign.root / "posts" / "thanks.yaml").write_text(
        "id: thanks\nat: 2027-01-20 10:00\n"
        f"text: 'Thanks @{bluesky_pds.handle} and @ghost-of-a-typo.test'\n"
        "thread: ['And @ghost-of-a-typo.test again']\n"
    )
    config = str(campaign.root / "scheduler.yaml")
    runner = CliRunner()
    offline = runner.invoke(app, ["validate", "-c", config], env=campaign.env)
    assert offline.exit_code == 0 and "ghost" not in offline.stdout
    online = runner.invoke(app, ["validate", "--online", "-c", config], env=campaign.env)
    assert online.exit_code == 0, online.output  # a warning: the post can still go out
    lines = [line for line in online.stdout.splitlines() if "mention" in line]
    assert len(lines) == 2 and all(
        "@ghost-of-a-typo.test is no Bluesky account" in x for x in lines
    )
    assert "thanks.yaml:3:" in lines[0] and "thanks.yaml:4:" in lines[1]
    assert bluesky_pds.handle not in " ".join(lines)
