"""The example campaign (posts/) published to Facebook, Threads, LinkedIn and Instagram
fakes, then read back: every platform holds exactly the text preview shows, with the photo
and its credit, and the thread in order."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postscheduler.config import load_settings
from postscheduler.delivery.engine import Engine
from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.posts.render import render_post
from postscheduler.posts.rules import validate

from .fakes.linkedin import FakeLinkedIn, read_little_text
from .fakes.meta import FakeFacebook, FakeInstagram, FakeThreads

EXAMPLE_POSTS = Path(__file__).parent.parent / "posts"
AFTER_THE_CAMPAIGN = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
ENV = {
    "FB_TOKEN": FakeFacebook.TOKEN,
    "IG_TOKEN": FakeInstagram.TOKEN,
    "THREADS_TOKEN": FakeThreads.TOKEN,
    "LI_TOKEN": FakeLinkedIn.TOKEN,
}


def project(tmp_path: Path, accounts: str, fakes: dict[str, Any]) -> Any:
    shutil.copytree(EXAMPLE_POSTS, tmp_path / "posts")
    config = tmp_path / "scheduler.yaml"
    config.write_text(
        f"""\
timezone: Europe/London
ledger: ledger.db
media_url: https://campaign.test/posts
link_cards: {{enabled: false}}  # the article is on example.org: never fetched from a test
publishing: {{late_grace: 3650d}}
accounts:
  fb: {{platform: facebook, page_id: "{FakeFacebook.PAGE}", token: "${{FB_TOKEN}}",
        api_base: "{fakes["fb"].base}"}}
  ig: {{platform: instagram, user_id: "{FakeInstagram.USER}", token: "${{IG_TOKEN}}",
        api_base: "{fakes["ig"].base}"}}
  threads: {{platform: threads, user_id: "{FakeThreads.USER}", token: "${{THREADS_TOKEN}}",
             api_base: "{fakes["threads"].base}"}}
  li: {{platform: linkedin, author: "{FakeLinkedIn.ORG}", token: "${{LI_TOKEN}}",
        version: 202611, api_base: "{fakes["li"].base}"}}
defaults: {{accounts: [{accounts}]}}
"""
    )
    return load_settings(config, environ=ENV)


def publish_all(settings: Any) -> tuple[Any, SqliteLedger]:
    catalog = validate(settings, now=AFTER_THE_CAMPAIGN)
    ledger = SqliteLedger(settings.ledger_path)
    engine = Engine(settings, ledger, clock=lambda: AFTER_THE_CAMPAIGN)
    engine.load(catalog)

    async def go() -> None:
        try:
            await engine.run_due()
        finally:
            await engine.aclose()

    asyncio.run(go())
    return catalog, ledger


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    with (
        FakeFacebook() as fb,
        FakeInstagram() as ig,
        FakeThreads() as threads,
        FakeLinkedIn() as li,
    ):
        ig.processing_checks = threads.processing_checks = 0  # containers ready at once
        yield {"fb": fb, "ig": ig, "threads": threads, "li": li}


def test_the_example_campaign_on_facebook_threads_and_linkedin(
    tmp_path: Path, fakes: dict[str, Any]
) -> None:
    fb, threads, li = fakes["fb"], fakes["threads"], fakes["li"]
    settings = project(tmp_path, "fb, threads, li", fakes)
    catalog, ledger = publish_all(settings)
    assert [f for f in catalog.findings if f.is_error] == []
    rows = ledger.deliveries()
    assert rows and all(r.state is DeliveryState.PUBLISHED for r in rows), rows
    for sp in catalog.posts:
        expected = {
            a: [p.text for p in render_post(sp.post, a, settings).parts]
            for a in ("fb", "threads", "li")
        }
        root = ledger.get(DeliveryKey(sp.id, "fb", 0))
        assert root is not None
        fb_post = next(p for p in fb.posts if p["id"] == root.remote_id)
        assert [fb_post["message"]] + [
            c["message"] for c in fb.comments[root.remote_id]
        ] == expected["fb"]
        if sp.post.image is not None:
            assert (
                fb_post["alt_text"] == sp.post.image.alt
                and sp.post.image.credit in fb_post["message"]
            )
        # Threads: the post, then each part a reply to the one before.
        chain = [
            ledger.get(DeliveryKey(sp.id, "threads", i)) for i in range(len(expected["threads"]))
        ]
        media = {m["id"]: m for m in threads.media}
        got = [media[c.remote_id] for c in chain if c is not None]
        assert [m["text"] for m in got] == expected["threads"]
        assert [m["reply_to_id"] for m in got] == [None] + [m["id"] for m in got[:-1]]
        li_root = ledger.get(DeliveryKey(sp.id, "li", 0))
        assert li_root is not None
        li_post = next(p for p in li.posts if p["id"] == li_root.remote_id)
        shown = [read_little_text(li_post["commentary"])] + [
            read_little_text(c["message"]["text"]) for c in li.comments[li_root.remote_id]
        ]
        assert shown == expected["li"]  # nothing cut by little text
    ledger.close()


def test_the_example_campaign_on_instagram(tmp_path: Path, fakes: dict[str, Any]) -> None:
    """The article with its photo goes out with the credit in the caption; the quotes, which
    have no image, are held by validate with its reason, never sent text-only."""
    ig = fakes["ig"]
    settings = project(tmp_path, "ig", fakes)
    catalog, ledger = publish_all(settings)
    refused = {f.post_id for f in catalog.findings if f.code == "needs-image"}
    with_image = [sp for sp in catalog.posts if sp.post.image is not None]
    assert with_image and refused == {sp.id for sp in catalog.posts} - {sp.id for sp in with_image}
    assert len(ig.media) == len(with_image)
    for sp in with_image:
        (part, *_) = render_post(sp.post, "ig", settings).parts
        (media,) = ig.published(part.text)
        assert media["media_url"] == f"https://campaign.test/posts/{sp.post.image.file}"
        assert media["alt_text"] == sp.post.image.alt and sp.post.image.credit in media["caption"]
    ledger.close()
