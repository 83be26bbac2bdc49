"""The signed webhook publisher against a receiver on 127.0.0.1, faults included."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from postscheduler.delivery.engine import Engine
from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.posts.rules import validate
from postscheduler.publishers import (
    OutcomeUnknownError,
    PermanentError,
    Published,
    PublishJob,
    TransientError,
    make_publisher,
)
from postscheduler.publishers.webhook import sign, verify
from postscheduler.redact import Redactor

from ..conftest import Project
from ..fakes.platforms import FakeWebhook

SECRET = "canary-webhook-SECRET-4471"
T0 = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)


def config(url: str) -> str:
    return f"""\
timezone: UTC
posts_dir: posts
ledger: ledger.db
accounts:
  site: {{platform: webhook, url: "{url}", secret: "${{SITE_SECRET}}"}}
defaults: {{accounts: [site]}}
publishing:
  retry: {{attempts: 3, first_delay: 1s, max_delay: 5s}}
"""


@pytest.fixture
def server() -> Iterator[FakeWebhook]:
    with FakeWebhook(SECRET) as s:
        yield s


@pytest.fixture
def project(make_project: Callable[[str], Project], server: FakeWebhook) -> Project:
    p = make_project(config(server.url))
    p.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: Hello.\nlink: https://example.org/a\n")
    return p


def job(identity: str = "postscheduler-abc") -> PublishJob:
    return PublishJob(
        key=DeliveryKey("p", "site"),
        identity=identity,
        text="Hello.",
        image=None,
        image_path=None,
        link="https://example.org/a",
        language="en",
        content_warning=None,
        reply_to=None,
        root=None,
        parts=1,
        due_at=T0,
        attempt=1,
    )


def publish_with(project: Project, timeout: float = 5.0) -> Any:
    settings = project.settings({"SITE_SECRET": SECRET})

    async def go() -> Any:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=2.0)) as http:
            publisher = make_publisher("site", settings, http=http)
            return await publisher.publish(job())

    return asyncio.run(go())


def test_signature_round_trip() -> None:
    body = b'{"a": 1}'
    assert verify("s3cret", "1700000000", body, sign("s3cret", "1700000000", body), max_age=1e12)
    assert not verify("other", "1700000000", body, sign("s3cret", "1700000000", body), max_age=1e12)
    assert not verify("s3cret", "1700000000", body, sign("s3cret", "1700000000", body))  # too old


def test_publish_signed_json(project: Project, server: FakeWebhook) -> None:
    published = publish_with(project)
    assert published == Published("w1", "https://site.test/1")
    (request,) = server.received
    got = request["body"]
    assert server.bad_signatures == 0
    assert request["headers"]["Idempotency-Key"] == "postscheduler-abc"
    assert {k: got[k] for k in ("post_id", "account", "part", "text", "link")} == {
        "post_id": "p",
        "account": "site",
        "part": 1,
        "text": "Hello.",
        "link": "https://example.org/a",
    }


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        ((503, {}, b"busy"), TransientError, "503 busy"),
        (
            (422, {}, b'{"error": "text rejected"}'),
            PermanentError,
            '422 {"error": "text rejected"}',
        ),
        ("drop", OutcomeUnknownError, "after the request was sent"),
        ("lose", OutcomeUnknownError, "after the request was sent"),
    ],
)
def test_faults_are_classified(
    project: Project, server: FakeWebhook, fault: Any, error: type[Exception], text: str
) -> None:
    server.faults.append(fault)
    with pytest.raises(error) as info:
        publish_with(project)
    assert text in str(info.value)
    assert SECRET not in str(info.value)


def test_429_retry_after(project: Project, server: FakeWebhook) -> None:
    server.faults.append((429, {"Retry-After": "17"}, b"slow down"))
    with pytest.raises(TransientError) as info:
        publish_with(project)
    assert info.value.retry_after == 17


def test_slow_response_is_an_unknown_outcome(project: Project, server: FakeWebhook) -> None:
    server.faults.append(("slow", 1.0))
    with pytest.raises(OutcomeUnknownError):
        publish_with(project, timeout=0.2)


def test_connection_refused_is_transient(make_project: Callable[[str], Project]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    project = make_project(config(f"http://127.0.0.1:{port}/hook"))
    with pytest.raises(TransientError, match="could not connect"):
        publish_with(project)


def engine(project: Project, clock: list[dt.datetime]) -> Engine:
    settings = project.settings({"SITE_SECRET": SECRET})
    e = Engine(
        settings,
        SqliteLedger(project.root / "ledger.db"),
        clock=lambda: clock[0],
        redact=Redactor.for_settings(settings),
    )
    e.load(validate(settings, now=clock[0]))
    return e


def test_engine_retries_5xx_then_publishes_once(project: Project, server: FakeWebhook) -> None:
    server.faults.extend([(503, {}, b"busy"), (502, {}, b"bad gateway")])
    clock = [T0]
    e = engine(project, clock)

    async def go() -> None:
        for _ in range(3):
            again = await e.deliver("p", "site")
            if again is not None:
                clock[0] = again
        await e.aclose()

    asyncio.run(go())
    row = e.ledger.get(DeliveryKey("p", "site"))
    assert row is not None and row.state is DeliveryState.PUBLISHED and row.attempts == 3
    assert server.requests == 3 and len(server.received) == 1
    assert len(set(server.keys())) == 1


def test_engine_lost_response_ends_unconfirmed_never_resent(
    project: Project, server: FakeWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    server.faults.append("lose")
    clock = [T0]
    e = engine(project, clock)

    async def go() -> None:
        await e.run_due()
        clock[0] = T0 + dt.timedelta(hours=1)
        await e.run_due()
        await e.recover()
        await e.aclose()

    with caplog.at_level(logging.DEBUG, logger="postscheduler"):
        asyncio.run(go())
    row = e.ledger.get(DeliveryKey("p", "site"))
    assert row is not None and row.state is DeliveryState.UNCONFIRMED
    assert len(server.received) == 1  # it did arrive, once; we were never told
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in (project.root / "ledger.db").read_bytes().decode("latin-1")
