"""Mastodon: replays of a real server's answers, and the idempotent resend."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
from typing import Any

import httpx
import pytest
import yaml

from postscheduler.config import Settings, load_settings
from postscheduler.publishers import (
    OutcomeUnknownError,
    PermanentError,
    Published,
    PublishJob,
    TransientError,
    make_publisher,
)

from ..conftest import Project, shared_file
from ..fakes.platforms import FakeMastodon
from .jobs import make_job

CONFIG = """\
accounts:
  m: {platform: mastodon, instance: "http://localhost:3000", token: "${M_TOKEN}"}
defaults: {accounts: [m]}
"""


def cassette(name: str) -> list[dict[str, Any]]:
    path = shared_file(f"mastodon/mastodonpy-cassettes/cassettes/{name}")
    return list(yaml.safe_load(path.read_text())["interactions"])


def replay(interactions: list[dict[str, Any]], seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answer each request with the next recorded response whose path matches."""
    queue = list(interactions)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        for i, item in enumerate(queue):
            recorded_path = httpx.URL(item["request"]["uri"]).path.rstrip("/")
            if recorded_path == request.url.path.rstrip("/"):
                recorded = queue.pop(i)["response"]
                body = recorded["body"]["string"]
                headers = [
                    (k, v)
                    for k, values in recorded["headers"].items()
                    for v in values
                    if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")
                ]
                return httpx.Response(
                    recorded["status"]["code"],
                    headers=headers,
                    content=body if isinstance(body, bytes) else body.encode(),
                )
        raise AssertionError(f"no recorded answer for {request.method} {request.url}")

    return httpx.MockTransport(handler)


def job(text: str = "Toot!", image: tuple[str, str] | None = None) -> PublishJob:
    photo = image[0] if image else None
    return make_job("m", text, identity="postscheduler-m", image_path=photo)


def run(
    project: Project, interactions: list[dict[str, Any]], fn: Any
) -> tuple[Any, list[httpx.Request]]:
    project.config_path.write_text(CONFIG)
    settings = load_settings(project.config_path, environ={"M_TOKEN": "t0k3n"})
    seen: list[httpx.Request] = []

    async def go() -> Any:
        async with httpx.AsyncClient(transport=replay(interactions, seen)) as http:
            return await fn(make_publisher("m", settings, http=http))

    return asyncio.run(go()), seen


def test_status_created(project: Project) -> None:
    published, (request,) = run(
        project, cassette("test_status.yaml")[:1], lambda p: p.publish(job())
    )
    assert published.remote_id == "117020583223442465"
    assert request.url.path == "/api/v1/statuses"
    assert b"status=Toot%21" in request.content
    assert request.headers["Idempotency-Key"] == "postscheduler-m"
    assert request.headers["Authorization"] == "Bearer t0k3n"


def test_localized_422_reaches_the_user_verbatim(project: Project) -> None:
    for recorded, words in zip(
        cassette("test_lang_for_errors.yaml"),
        ["Text上限は500文字です", "Text Begrenzung von 500 Zeichen überschritten"],
        strict=True,
    ):
        with pytest.raises(PermanentError) as info:
            run(project, [recorded], lambda p: p.publish(job("a" * 600)))
        assert words in info.value.message and "422" in info.value.message


def test_rate_limit_reset_is_iso_8601(project: Project) -> None:
    recorded = cassette("test_status.yaml")[0]
    reset = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)
    recorded["response"]["status"]["code"] = 429
    recorded["response"]["headers"]["x-ratelimit-reset"] = [
        reset.isoformat().replace("+00:00", "Z")
    ]
    recorded["response"]["body"]["string"] = '{"error":"Too many requests"}'
    with pytest.raises(TransientError) as info:
        run(project, [recorded], lambda p: p.publish(job()))
    assert info.value.retry_after == pytest.approx(180, abs=3)


def test_synchronous_image_upload(project: Project) -> None:
    photo = str(project.image())
    interactions = cassette("test_media_post_file.yaml") + cassette("test_status.yaml")[:1]
    published, seen = run(project, interactions, lambda p: p.publish(job(image=(photo, "x"))))
    assert [r.url.path for r in seen] == ["/api/v2/media", "/api/v1/statuses"]
    assert b'name="description"\r\n\r\nMarchers with a banner.' in seen[0].content
    assert b"media_ids%5B%5D=117020576894251992" in seen[1].content
    assert published.remote_id == "117020583223442465"


def test_processing_media_is_polled_until_ready(project: Project) -> None:
    photo = str(project.image())
    interactions = cassette("test_media_post[False].yaml")[:2] + cassette("test_status.yaml")[:1]
    published, seen = run(project, interactions, lambda p: p.publish(job(image=(photo, "x"))))
    assert [(r.method, r.url.path) for r in seen] == [
        ("POST", "/api/v2/media"),  # answered 202, url null: still processing
        ("GET", "/api/v1/media/117020619601888181"),  # answered 200 with the url
        ("POST", "/api/v1/statuses"),
    ]
    assert published.remote_id == "117020583223442465"


def test_missing_status_404_is_permanent(project: Project) -> None:
    recorded = cassette("test_status_missing.yaml")[0]
    recorded["request"]["uri"] = "http://localhost:3000/api/v1/statuses"
    with pytest.raises(PermanentError, match="404 Not Found"):
        run(project, [recorded], lambda p: p.publish(job()))


def test_verify_credentials(project: Project) -> None:
    described, _ = run(
        project, cassette("test_verify_credentials.yaml")[:1], lambda p: p.check_credentials()
    )
    assert described == "@mastodonpy_test@localhost"


def test_resend_after_a_lost_answer_returns_the_first_status(project: Project) -> None:
    with FakeMastodon() as fake:
        project.config_path.write_text(
            f'accounts:\n  m: {{platform: mastodon, instance: "{fake.base}", token: "${{T}}"}}\n'
        )
        settings = load_settings(project.config_path, environ={"T": FakeMastodon.TOKEN})
        fake.faults.append("lose")

        async def go() -> Published:
            async with httpx.AsyncClient() as http:
                publisher = make_publisher("m", settings, http=http)
                with pytest.raises(OutcomeUnknownError):
                    await publisher.publish(job("Once only."))
                return await publisher.publish(job("Once only."))  # what the engine does

        published = asyncio.run(go())
        assert len(fake.by_key) == 1  # one status on the server
        assert published.remote_id == fake.by_key["postscheduler-m"]["id"]


def test_instance_limits_from_a_real_answer() -> None:
    from postscheduler.publishers.mastodon import instance_limits

    (recorded,) = cassette("test_instance.yaml")[:1]

    async def go() -> dict[str, int]:
        async with httpx.AsyncClient(transport=replay([recorded], [])) as http:
            return await instance_limits(http, "http://localhost:3000")

    assert asyncio.run(go()) == {
        "max_characters": 500,
        "characters_reserved_per_url": 23,
        "max_media_attachments": 4,
        "image_size_limit": 16777216,
    }


def _validate(project: Project, fake: Any, *args: str) -> Any:
    """`postscheduler validate ARGS` on a project whose one account is the fake's instance."""
    from typer.testing import CliRunner

    from postscheduler.cli import app

    project.config_path.write_text(
        "ledger: state/ledger.db\n"
        f'accounts:\n  m: {{platform: mastodon, instance: "{fake.base}", token: "${{T}}"}}\n'
        "defaults: {accounts: [m]}\n"
    )
    return CliRunner().invoke(app, ["validate", *args, "-c", str(project.config_path)])


def test_validate_online_uses_the_instance_limits(project: Project) -> None:
    """A 700-character post: too long by Mastodon's default, fine on a 1000-character server."""
    with FakeMastodon() as fake:
        fake.instance_max_characters = 1000
        project.write("p.yaml", f"id: p\nat: 2027-01-14 09:00\ntext: {'a' * 700}\n")
        offline = _validate(project, fake)
        assert offline.exit_code == 1 and "700/500" in offline.stdout
        online = _validate(project, fake, "--online")
        assert online.exit_code == 0, online.output
        assert (project.root / "state" / "instance-limits.json").exists()
        requests = len(fake.received)
        again = _validate(project, fake, "--online")
        assert again.exit_code == 0 and len(fake.received) == requests  # answered from the cache


def test_validate_online_applies_the_instance_image_size_limit(project: Project) -> None:
    with FakeMastodon() as fake:
        fake.instance_image_size_limit = 1_000_000
        os.truncate(project.image("images/big.png", fmt="PNG", size=(700, 700)), 1_200_000)
        project.write(
            "p.yaml",
            "id: p\nat: 2027-01-14 09:00\ntext: hi\n"
            "image: {file: images/big.png, alt: A photo., credit: Jo}\n",
        )
        offline = _validate(project, fake)
        assert offline.exit_code == 0, offline.output  # within Mastodon's default 16 MB
        online = _validate(project, fake, "--online")
        assert online.exit_code == 1
        assert "big.png is 1,200,000 bytes, over Mastodon's 1,000,000" in online.stdout


def test_image_by_url_follows_redirects_and_is_capped(project: Project) -> None:
    from postscheduler.posts.models import Image

    with FakeMastodon() as fake:
        project.config_path.write_text(
            f'accounts:\n  m: {{platform: mastodon, instance: "{fake.base}", token: "${{T}}"}}\n'
            "link_cards: {allow_private_addresses: true}\n"  # the image host is on 127.0.0.1
        )
        settings = load_settings(project.config_path, environ={"T": FakeMastodon.TOKEN})
        image = Image(url=f"{fake.base}/public/moved.jpg", alt="A photo.", credit="Jo")
        the_job = dataclasses.replace(job("With a picture."), image=image)

        async def go(settings: Settings) -> Published:
            async with httpx.AsyncClient() as http:
                return await make_publisher("m", settings, http=http).publish(the_job)

        assert asyncio.run(go(settings)).remote_id
        upload = next(r for r in fake.received if r["path"] == "/api/v2/media")
        assert upload["body"]["file"] == ("moved.jpg", b"\xff\xd8\xff\xe0 a jpeg")
        # The instance's own limit (validate --online learns it) caps the download.
        account = settings.config.accounts["m"].model_copy(update={"max_image_bytes": 5})
        small = dataclasses.replace(
            settings, config=settings.config.model_copy(update={"accounts": {"m": account}})
        )
        with pytest.raises(PermanentError, match="over 5 bytes"):
            asyncio.run(go(small))


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"configuration": []}', b"null"])
def test_validate_online_survives_an_instance_answering_nonsense(
    project: Project, body: bytes
) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: Hello.\n")
    with FakeMastodon() as fake:
        fake.faults.append((200, {"Content-Type": "application/json"}, body))
        online = _validate(project, fake, "--online")
    assert online.exit_code == 0, online.output  # the defaults apply; no traceback
    assert "Traceback" not in online.output
