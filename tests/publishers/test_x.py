"""X: the OAuth 1.0a signer against X's documented example, and recorded real responses."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import httpx
import pytest
import yaml
from authlib.oauth1.rfc5849.signature import escape

from postscheduler.config import load_settings
from postscheduler.publishers import (
    PermanentError,
    Published,
    PublishJob,
    TransientError,
    make_publisher,
)
from postscheduler.publishers.x import oauth1_authorization

from ..conftest import Project, shared_file
from ..fakes.platforms import FakeX
from .jobs import make_job


def vectors() -> dict[str, Any]:
    return json.loads(shared_file("x/oauth1-signature-vectors.json").read_text())


def _signature(header: str) -> str:
    from urllib.parse import unquote

    for part in header.removeprefix("OAuth ").split(", "):
        key, value = part.split("=", 1)
        if key == "oauth_signature":
            return unquote(value.strip('"'))
    raise AssertionError(header)


def _sign(v: dict[str, Any], url: str) -> str:
    inputs = v["inputs"]
    oauth = inputs["oauth_params"]
    query = "&".join(f"{k}={val}" for k, val in inputs["query_params"].items())
    return oauth1_authorization(
        inputs["method"],
        f"{url}?{query}",
        consumer_key=oauth["oauth_consumer_key"],
        consumer_secret=inputs["consumer_secret"],
        token=oauth["oauth_token"],
        token_secret=inputs["token_secret"],
        form=list(inputs["body_params"].items()),
        nonce=oauth["oauth_nonce"],
        timestamp=oauth["oauth_timestamp"],
    )


def test_documented_signature() -> None:
    v = vectors()
    assert _signature(_sign(v, v["inputs"]["url"])) == v["documented_oauth_signature"]


def test_all_url_variants() -> None:
    v = vectors()
    for variant in v["url_variants"]:
        assert _signature(_sign(v, variant["url"])) == variant["oauth_signature"], variant["url"]


def test_documented_authorization_header() -> None:
    v = vectors()
    legacy = next(x for x in v["url_variants"] if x["oauth_signature"].startswith("tnnArx"))
    assert _sign(v, legacy["url"]) == v["documented_authorization_header_example"]["value"]


def test_percent_encoding_table() -> None:
    for example in vectors()["documented_percent_encoding_examples"]:
        assert escape(example["in"]) == example["out"]


CONFIG = """\
accounts:
  x:
    platform: x
    consumer_key: ${X_KEY}
    consumer_secret: ${X_SECRET}
    access_token: ${X_TOKEN}
    access_token_secret: ${X_TOKEN_SECRET}
    api_base: https://api.twitter.com
defaults: {accounts: [x]}
"""
ENV = {"X_KEY": "k", "X_SECRET": "s", "X_TOKEN": "t", "X_TOKEN_SECRET": "ts"}


def _cassette(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load(shared_file(f"x/tweepy-cassettes/{name}").read_text())
    return list(data["interactions"])


def _replay(interaction: dict[str, Any], seen: list[httpx.Request]) -> httpx.MockTransport:
    recorded = interaction["response"]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = recorded["body"]["string"]
        headers = [(k, v) for k, values in recorded["headers"].items() for v in values]
        return httpx.Response(
            recorded["status"]["code"],
            headers=headers,
            content=body if isinstance(body, bytes) else body.encode(),
        )

    return httpx.MockTransport(handler)


def _job(text: str) -> PublishJob:
    return make_job("x", text, identity="postscheduler-x")


def test_create_post_replays_a_real_201(project: Project) -> None:
    """tweepy's recording of a real create: 201, gzip body, x-rate-limit-* headers."""
    interaction = _cassette("test_client_create_and_delete_tweet.yaml")[0]
    project.config_path.write_text(CONFIG)
    settings = load_settings(project.config_path, environ=ENV)
    seen: list[httpx.Request] = []

    async def go() -> Published:
        async with httpx.AsyncClient(transport=_replay(interaction, seen)) as http:
            return await make_publisher("x", settings, http=http).publish(_job("Test Tweet"))

    published = asyncio.run(go())
    assert published == Published(
        "1456012973835788293", "https://x.com/i/web/status/1456012973835788293"
    )
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", interaction["request"]["uri"])
    assert json.loads(request.content) == json.loads(interaction["request"]["body"])
    assert request.headers["Authorization"].startswith('OAuth oauth_consumer_key="k"')


def test_rate_limit_reset_is_epoch_seconds(project: Project) -> None:
    interaction = _cassette("test_client_create_and_delete_tweet.yaml")[0]
    reset = int(dt.datetime.now(dt.UTC).timestamp()) + 90
    interaction["response"]["status"]["code"] = 429
    interaction["response"]["headers"]["x-rate-limit-reset"] = [str(reset)]
    interaction["response"]["headers"].pop("content-encoding")
    interaction["response"]["body"]["string"] = '{"title": "Too Many Requests", "status": 429}'
    project.config_path.write_text(CONFIG)
    settings = load_settings(project.config_path, environ=ENV)

    async def go() -> Published:
        async with httpx.AsyncClient(transport=_replay(interaction, [])) as http:
            return await make_publisher("x", settings, http=http).publish(_job("Test Tweet"))

    with pytest.raises(TransientError) as info:
        asyncio.run(go())
    assert info.value.retry_after == pytest.approx(90, abs=2)


def test_duplicate_content_is_explained(project: Project) -> None:
    interaction = _cassette("test_client_create_and_delete_tweet.yaml")[0]
    response = interaction["response"]
    response["status"]["code"] = 403
    response["headers"].pop("content-encoding")
    response["body"]["string"] = json.dumps(
        {"detail": "You are not allowed to create a Tweet with duplicate content.", "status": 403}
    )
    project.config_path.write_text(CONFIG)
    settings = load_settings(project.config_path, environ=ENV)

    async def go() -> Published:
        async with httpx.AsyncClient(transport=_replay(interaction, [])) as http:
            return await make_publisher("x", settings, http=http).publish(_job("Test Tweet"))

    with pytest.raises(PermanentError, match="identical to a recent one"):
        asyncio.run(go())


def test_users_me_replay(project: Project) -> None:
    interaction = _cassette("test_client_get_me.yaml")[0]
    project.config_path.write_text(CONFIG)
    settings = load_settings(project.config_path, environ=ENV)

    async def go() -> str:
        async with httpx.AsyncClient(transport=_replay(interaction, [])) as http:
            return await make_publisher("x", settings, http=http).check_credentials()

    assert asyncio.run(go()).startswith("@")


OAUTH2 = """\
ledger: state/ledger.db
accounts:
  x:
    platform: x
    client_id: campaign-client
    refresh_token: ${{X_REFRESH}}
    api_base: {base}
defaults: {{accounts: [x]}}
"""


def _oauth2_publish(project: Project, fake: FakeX, text: str) -> Published:
    project.config_path.write_text(OAUTH2.format(base=fake.base))
    settings = load_settings(project.config_path, environ={"X_REFRESH": "canary-x-REFRESH-0"})

    async def go() -> Published:
        async with httpx.AsyncClient() as http:
            return await make_publisher("x", settings, http=http).publish(_job(text))

    return asyncio.run(go())


def test_oauth2_refresh_token_rotates_and_is_kept(project: Project) -> None:
    with FakeX() as fake:
        first = _oauth2_publish(project, fake, "First.")
        token_file = project.root / "state" / "x-x.refresh-token"
        assert token_file.read_text() == "canary-x-REFRESH-1"
        assert token_file.stat().st_mode & 0o777 == 0o600
        # A new process: the environment's token was used up; the kept one works.
        second = _oauth2_publish(project, fake, "Second.")
        assert token_file.read_text() == "canary-x-REFRESH-2"
        assert first.remote_id != second.remote_id and fake.token_grants == 2
        tweets = [r for r in fake.received if r["path"] == "/2/tweets"]
        assert [t["headers"]["Authorization"] for t in tweets] == [
            "Bearer canary-x-BEARER-1",
            "Bearer canary-x-BEARER-2",
        ]


def test_oauth2_expired_access_token_is_renewed_once(project: Project) -> None:
    with FakeX() as fake:
        project.config_path.write_text(OAUTH2.format(base=fake.base))
        settings = load_settings(project.config_path, environ={"X_REFRESH": "canary-x-REFRESH-0"})

        async def go() -> tuple[Published, Published]:
            async with httpx.AsyncClient() as http:
                publisher = make_publisher("x", settings, http=http)
                one = await publisher.publish(_job("One."))
                fake.access_token = "revoked"  # X ended the token before its time
                two = await publisher.publish(_job("Two."))
                return one, two

        one, two = asyncio.run(go())
        assert fake.token_grants == 2 and one.remote_id != two.remote_id


def test_oauth2_revoked_refresh_token_says_what_to_do(project: Project) -> None:
    with FakeX() as fake:
        fake.refresh_token = "something-else"
        with pytest.raises(PermanentError, match="authorize the app again") as info:
            _oauth2_publish(project, fake, "Nope.")
        assert "canary" not in info.value.message


def test_x_account_needs_one_way_to_sign_in(project: Project) -> None:
    from postscheduler.errors import ConfigError

    project.config_path.write_text(
        'accounts:\n  x: {platform: x, consumer_key: "${K}", refresh_token: "${R}", client_id: c}\n'
    )
    with pytest.raises(ConfigError, match=r"OAuth 1\.0a"):
        load_settings(project.config_path, environ={})
