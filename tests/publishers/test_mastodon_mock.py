"""Mastodon against mastodon-mock, a third-party Mastodon API server run on 127.0.0.1.

Its leniencies (../shared/interop/MANIFEST.md) are why length limits and media processing
are tested against recordings instead (test_mastodon.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from postscheduler.config import load_settings
from postscheduler.delivery.engine import Engine
from postscheduler.errors import TransientError
from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.posts.rules import validate
from postscheduler.publishers import Published, Resolution, make_publisher

from .. import mastodon_server
from ..conftest import Project
from .test_mastodon import job

TOKEN = mastodon_server.TOKEN


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with mastodon_server.running(tmp_path_factory.mktemp("mastodon-mock")) as base:
            yield base
    except mastodon_server.StartError as exc:
        pytest.fail(str(exc))


@pytest.fixture(autouse=True)
def no_faults(server: str) -> Iterator[None]:
    httpx.delete(f"{server}/api/v1/_mock/faults", timeout=5).raise_for_status()
    yield
    httpx.delete(f"{server}/api/v1/_mock/faults", timeout=5).raise_for_status()


def fault(base: str, rule: dict[str, Any]) -> None:
    httpx.post(f"{base}/api/v1/_mock/faults", json=rule, timeout=5).raise_for_status()


def settings_for(project: Project, base: str) -> Any:
    project.config_path.write_text(
        "timezone: UTC\nledger: ledger.db\n"
        f'accounts:\n  m: {{platform: mastodon, instance: "{base}", token: "${{T}}"}}\n'
        "defaults: {accounts: [m]}\n"
    )
    return load_settings(project.config_path, environ={"T": TOKEN})


def publish(settings: Any, *jobs: Any) -> list[Published]:
    async def go() -> list[Published]:
        async with httpx.AsyncClient(timeout=10) as http:
            publisher = make_publisher("m", settings, http=http)
            return [await publisher.publish(j) for j in jobs]

    return asyncio.run(go())


def test_status_reads_back(project: Project, server: str) -> None:
    (published,) = publish(settings_for(project, server), job("Hello from postscheduler."))
    status = httpx.get(f"{server}/api/v1/statuses/{published.remote_id}", timeout=5).json()
    assert "Hello from postscheduler." in status["content"]


def test_idempotent_resend_returns_the_same_status(project: Project, server: str) -> None:
    first, again = publish(settings_for(project, server), job("Only once."), job("Only once."))
    assert first.remote_id == again.remote_id


def test_an_in_doubt_status_is_found_after_its_key_was_forgotten(
    project: Project, server: str
) -> None:
    import dataclasses

    settings = settings_for(project, server)
    now = dt.datetime.now(dt.UTC)
    text = "Sent just before the crash & <found> after it.\n\nSecond paragraph #Peru"
    sent = dataclasses.replace(job(text), identity="key-1", due_at=now - dt.timedelta(minutes=1))
    (published,) = publish(settings, sent)

    async def resolve(j: Any) -> Any:
        async with httpx.AsyncClient(timeout=10) as http:
            return await make_publisher("m", settings, http=http).resolve_in_doubt(j)

    # More than an hour later the server has forgotten the key: look before resending.
    forgotten = dataclasses.replace(sent, identity="key-forgotten")
    assert asyncio.run(resolve(forgotten)) == published
    assert asyncio.run(resolve(dataclasses.replace(sent, text="Another text"))) == (
        Resolution.NOT_SENT
    )
    # The same words posted before this delivery was due are another post (a weekly repeat).
    later = dataclasses.replace(sent, due_at=now + dt.timedelta(hours=1))
    assert asyncio.run(resolve(later)) is Resolution.NOT_SENT


def test_thread_replies(project: Project, server: str) -> None:
    import dataclasses

    settings = settings_for(project, server)
    (root,) = publish(settings, dataclasses.replace(job("Part one."), identity="i-1"))
    reply = dataclasses.replace(job("Part two."), identity="i-2", reply_to=root, root=root)
    (second,) = publish(settings, reply)
    status = httpx.get(f"{server}/api/v1/statuses/{second.remote_id}", timeout=5).json()
    assert status["in_reply_to_id"] == root.remote_id


@pytest.mark.parametrize(
    ("effect", "retry_after"),
    [({"type": "ratelimit"}, 300.0), ({"type": "status", "status": 503}, None)],
)
def test_injected_faults_are_transient(
    project: Project, server: str, effect: dict[str, Any], retry_after: float | None
) -> None:
    fault(
        server,
        {
            "match": {"methods": ["POST"], "path": "/api/v1/statuses"},
            "effect": effect,
            "count": 1,  # one request only
        },
    )
    with pytest.raises(TransientError) as info:
        publish(settings_for(project, server), job("Faulty."))
    if retry_after is not None:  # the mock sends Retry-After and an epoch reset
        assert info.value.retry_after == pytest.approx(retry_after, abs=5)


def test_engine_retries_through_a_fault_and_publishes_once(project: Project, server: str) -> None:
    settings = settings_for(project, server)
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: Through the storm.\n")
    fault(
        server,
        {
            "match": {"methods": ["POST"], "path": "/api/v1/statuses"},
            "effect": {"type": "status", "status": 502},
            "count": 1,  # one request only
        },
    )
    clock = [dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)]
    engine = Engine(settings, SqliteLedger(project.root / "ledger.db"), clock=lambda: clock[0])
    engine.load(validate(settings, now=clock[0]))

    async def go() -> None:
        again = await engine.deliver("p", "m")
        assert again is not None
        clock[0] = again
        await engine.deliver("p", "m")
        await engine.aclose()

    asyncio.run(go())
    row = engine.ledger.get(DeliveryKey("p", "m"))
    assert row is not None and row.state is DeliveryState.PUBLISHED and row.attempts == 2


def test_verify_credentials(project: Project, server: str) -> None:
    settings = settings_for(project, server)

    async def go() -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            return await make_publisher("m", settings, http=http).check_credentials()

    assert asyncio.run(go()) == "@testuser@127.0.0.1"
