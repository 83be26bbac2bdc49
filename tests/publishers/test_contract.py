"""One contract suite over every registered publisher: each HTTP one against its loopback
fake platform (the faults of HTTP too), the outbox against its folder."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from postscheduler.config import load_settings
from postscheduler.posts.models import Image
from postscheduler.publishers import (
    OutcomeUnknownError,
    PermanentError,
    Published,
    Publisher,
    PublishJob,
    TransientError,
    make_publisher,
)

from ..conftest import Project
from ..fakes.linkedin import FakeLinkedIn
from ..fakes.meta import FakeFacebook, FakeInstagram, FakeThreads, graph_error
from ..fakes.platforms import (
    FakeBluesky,
    FakeDiscord,
    FakeMastodon,
    FakePlatform,
    FakeSlack,
    FakeTelegram,
    FakeWebhook,
    FakeX,
    _json,
)
from .jobs import make_job

T0 = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)


@dataclasses.dataclass
class Case:
    name: str
    fake: Callable[[], FakePlatform]
    account: Callable[[FakePlatform], str]  # the account's YAML mapping
    env: Callable[[FakePlatform], dict[str, str]]
    secret: str  # the canary that must never show
    rate_limited: Callable[[], tuple[int, dict[str, str], bytes]]
    retry_after: float | None
    rejected: tuple[int, dict[str, str], bytes]
    rejected_text: str
    image_files: bool = True
    verifiable: bool = True  # the platform can say whether credentials are good
    idempotent: bool = False  # a resend with the same identity creates nothing new
    http: bool = True  # talks HTTP: the faults of HTTP apply
    needs_image: bool = False  # has no text-only posts (Instagram): every job has an image


X_ENV = {
    "X_KEY": FakeX.CREDS["consumer_key"],
    "X_SECRET": FakeX.CREDS["consumer_secret"],
    "X_TOKEN": FakeX.CREDS["token"],
    "X_TOKEN_SECRET": FakeX.CREDS["token_secret"],
}


class FakeOutbox:
    """The outbox's folder seen as a platform: ``received`` is what it wrote, in order."""

    def __init__(self) -> None:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        self.base = self._dir.name
        self.faults: list[Any] = []

    @property
    def received(self) -> list[dict[str, Any]]:
        files = sorted(Path(self.base).glob("*.json"), key=lambda f: f.stat().st_mtime_ns)
        return [{"path": f.name, "body": json.loads(f.read_text())} for f in files]

    def __enter__(self) -> FakeOutbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


CASES = [
    Case(
        "outbox",
        FakeOutbox,  # type: ignore[arg-type]
        lambda f: f'{{platform: outbox, path: "{f.base}"}}',
        lambda f: {},
        "no secret",
        lambda: (0, {}, b""),
        0.0,
        (0, {}, b""),
        "",
        verifiable=False,
        idempotent=True,
        http=False,
    ),
    Case(
        "bluesky",
        FakeBluesky,
        lambda f: (
            f'{{platform: bluesky, service: "{f.base}", handle: {FakeBluesky.HANDLE}, '
            'app_password: "${BSKY_PASSWORD}"}'
        ),
        lambda f: {"BSKY_PASSWORD": FakeBluesky.PASSWORD},
        FakeBluesky.PASSWORD,
        lambda: (
            429,
            {"Content-Type": "application/json", "RateLimit-Reset": str(int(time.time()) + 30)},
            b'{"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}',
        ),
        30.0,
        FakeBluesky.error(
            400,
            "InvalidRequest",
            "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes",
        ),
        "400 InvalidRequest: Invalid app.bsky.feed.post record: Record/text must not be longer "
        "than 300 graphemes",
        idempotent=True,
    ),
    Case(
        "mastodon",
        FakeMastodon,
        lambda f: f'{{platform: mastodon, instance: "{f.base}", token: "${{M_TOKEN}}"}}',
        lambda f: {"M_TOKEN": FakeMastodon.TOKEN},
        FakeMastodon.TOKEN,
        lambda: (
            429,
            {
                "Content-Type": "application/json",
                "X-RateLimit-Reset": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=45))
                .isoformat()
                .replace("+00:00", "Z"),
            },
            b'{"error": "Too many requests"}',
        ),
        45.0,
        (
            422,
            {"Content-Type": "application/json"},
            '{"error": "Gültigkeitsprüfung ist fehlgeschlagen: Text Begrenzung von 500 '
            'Zeichen überschritten"}'.encode(),
        ),
        "422 Gültigkeitsprüfung ist fehlgeschlagen: Text Begrenzung von 500 Zeichen überschritten",
        idempotent=True,
    ),
    Case(
        "x",
        FakeX,
        lambda f: (
            '{platform: x, consumer_key: "${X_KEY}", consumer_secret: "${X_SECRET}", '
            f'access_token: "${{X_TOKEN}}", access_token_secret: "${{X_TOKEN_SECRET}}", '
            f'api_base: "{f.base}"}}'
        ),
        lambda f: dict(X_ENV),
        FakeX.CREDS["consumer_secret"],
        lambda: (
            429,
            {"Content-Type": "application/json", "x-rate-limit-reset": str(int(time.time()) + 30)},
            b'{"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429}',
        ),
        30.0,
        (
            403,
            {"Content-Type": "application/json"},
            b'{"detail": "You are not allowed to create a Tweet with duplicate content.",'
            b' "title": "Forbidden", "status": 403}',
        ),
        "403 You are not allowed to create a Tweet with duplicate content.",
    ),
    Case(
        "telegram",
        FakeTelegram,
        lambda f: (
            '{platform: telegram, bot_token: "${TG_TOKEN}", chat_id: "@campaign", '
            f'api_base: "{f.base}"}}'
        ),
        lambda f: {"TG_TOKEN": FakeTelegram.TOKEN},
        FakeTelegram.TOKEN,
        lambda: FakeTelegram.error(429, "Too Many Requests: retry after 7", retry_after=7),
        7.0,
        FakeTelegram.error(403, "Forbidden: bot is not a member of the channel chat"),
        "403 Forbidden: bot is not a member of the channel chat",
    ),
    Case(
        "discord",
        FakeDiscord,
        lambda f: '{platform: discord, webhook_url: "${DISCORD_URL}"}',
        lambda f: {"DISCORD_URL": f.base + FakeDiscord.HOOK},
        "canary-discord-TOKEN",
        lambda: (
            429,
            {"Content-Type": "application/json", "Retry-After": "2"},
            b'{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}',
        ),
        1.5,
        (
            404,
            {"Content-Type": "application/json"},
            b'{"message": "Unknown Webhook", "code": 10015}',
        ),
        '404 {"message": "Unknown Webhook", "code": 10015}',
    ),
    Case(
        "slack",
        FakeSlack,
        lambda f: '{platform: slack, webhook_url: "${SLACK_URL}"}',
        lambda f: {"SLACK_URL": f.base + FakeSlack.HOOK},
        "canary-slack-TOKEN",
        lambda: (429, {"Content-Type": "text/plain", "Retry-After": "30"}, b"rate_limited"),
        30.0,
        (403, {"Content-Type": "text/plain"}, b"action_prohibited"),
        "403 action_prohibited",
        image_files=False,
        verifiable=False,
    ),
    Case(
        "webhook",
        FakeWebhook,
        lambda f: (
            f'{{platform: webhook, url: "{f.base}{FakeWebhook.PATH}", secret: "${{HOOK_SECRET}}"}}'
        ),
        lambda f: {"HOOK_SECRET": FakeWebhook.SECRET},
        FakeWebhook.SECRET,
        lambda: (429, {"Content-Type": "application/json", "Retry-After": "12"}, b"{}"),
        12.0,
        (422, {"Content-Type": "application/json"}, b'{"error": "text rejected"}'),
        '422 {"error": "text rejected"}',
        verifiable=False,
    ),
]


def _meta_throttled(code: int = 80001) -> tuple[int, dict[str, str], bytes]:
    """Meta's throttling: a 400 with a throttling code, the wait in minutes in a header."""
    status, headers, body = graph_error(400, f"(#{code}) There have been too many calls", code)
    usage = {
        "1029384756": [
            {
                "type": "pages",
                "call_count": 100,
                "total_cputime": 20,
                "total_time": 30,
                "estimated_time_to_regain_access": 2,
            }
        ]
    }
    return status, {**headers, "X-Business-Use-Case-Usage": json.dumps(usage)}, body


CASES += [
    Case(
        "facebook",
        FakeFacebook,
        lambda f: (
            f'{{platform: facebook, page_id: "{FakeFacebook.PAGE}", token: "${{FB_TOKEN}}", '
            f'api_base: "{f.base}"}}'
        ),
        lambda f: {"FB_TOKEN": FakeFacebook.TOKEN},
        FakeFacebook.TOKEN,
        _meta_throttled,
        120.0,
        graph_error(400, "(#100) Invalid parameter", 100),
        "400 (#100) Invalid parameter [code 100]",
    ),
    Case(
        "instagram",
        FakeInstagram,
        lambda f: (
            f'{{platform: instagram, user_id: "{FakeInstagram.USER}", token: "${{IG_TOKEN}}", '
            f'api_base: "{f.base}"}}'
        ),
        lambda f: {"IG_TOKEN": FakeInstagram.TOKEN},
        FakeInstagram.TOKEN,
        _meta_throttled,
        120.0,
        graph_error(400, "The aspect ratio is not supported.", 36003, 2207009),
        "400 The aspect ratio is not supported. [code 36003, subcode 2207009]",
        needs_image=True,
    ),
    Case(
        "threads",
        FakeThreads,
        lambda f: (
            f'{{platform: threads, user_id: "{FakeThreads.USER}", token: "${{THREADS_TOKEN}}", '
            f'api_base: "{f.base}"}}'
        ),
        lambda f: {"THREADS_TOKEN": FakeThreads.TOKEN},
        FakeThreads.TOKEN,
        lambda: _meta_throttled(4),
        120.0,
        graph_error(400, "(#100) Param text must be at most 500 characters long.", 100),
        "400 (#100) Param text must be at most 500 characters long. [code 100]",
    ),
    Case(
        "linkedin",
        FakeLinkedIn,
        lambda f: (
            f'{{platform: linkedin, author: "{FakeLinkedIn.ORG}", token: "${{LI_TOKEN}}", '
            f'version: 202611, api_base: "{f.base}"}}'
        ),
        lambda f: {"LI_TOKEN": FakeLinkedIn.TOKEN},
        FakeLinkedIn.TOKEN,
        lambda: _json(429, {"message": "Resource level throttle limit", "status": 429}),
        None,  # LinkedIn says nothing of when: the engine backs off
        _json(422, {"message": "/commentary :: length 3012 exceeds 3000", "status": 422}),
        "422 /commentary :: length 3012 exceeds 3000",
    ),
]

HTTP_CASES = [c for c in CASES if c.http]
# Download an image.url to upload its bytes.
UPLOADERS = ("bluesky", "mastodon", "x", "linkedin")


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


# The faults of HTTP: for the publishers that talk it (all but the outbox).
http_only = pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])


def test_every_registered_publisher_is_in_this_suite() -> None:
    from postscheduler.platforms import PLATFORMS

    assert sorted(c.name for c in CASES) == sorted(PLATFORMS)


@pytest.fixture
def fake(case: Case) -> Iterator[FakePlatform]:
    with case.fake() as f:
        yield f


def settings_for(
    project: Project,
    case: Case,
    fake: FakePlatform,
    env: dict[str, str] | None = None,
    *,
    allow_private: bool = True,  # the fakes' images are on 127.0.0.1, refused by default
) -> Any:
    project.config_path.write_text(
        f"accounts:\n  acct: {case.account(fake)}\ndefaults: {{accounts: [acct]}}\n"
        f"media_url: {fake.base if hasattr(fake, 'httpd') else 'https://campaign.test'}/media\n"
        f"link_cards: {{allow_private_addresses: {str(allow_private).lower()}}}\n"
    )
    return load_settings(project.config_path, environ=case.env(fake) if env is None else env)


def job(
    project: Project,
    case: Case,
    *,
    text: str = "Hello, Perú ✊🏽",
    image: bool = False,
    part: int = 0,
    reply_to: Published | None = None,
) -> PublishJob:
    image = image or (case.needs_image and part == 0)
    path = str(project.image()) if image else None
    return make_job(
        "acct",
        text,
        identity=f"postscheduler-0123456789abcde{part}",  # each part its own, as claimed
        image_path=path,
        language="en",
        part=part,
        reply_to=reply_to,
    )


def call(settings: Any, fn: Callable[[Publisher], Any]) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0)) as http:
            return await fn(make_publisher("acct", settings, http=http))

    return asyncio.run(go())


def fields(request: dict[str, Any]) -> dict[str, Any]:
    """A form-encoded body as a dict (one value per key unless repeated)."""
    body = request["body"]
    if isinstance(body, str):
        return {k: v if len(v) > 1 else v[0] for k, v in parse_qs(body).items()}
    return dict(body)


def test_publish_text(project: Project, case: Case, fake: FakePlatform) -> None:
    settings = settings_for(project, case, fake)
    published = call(settings, lambda p: p.publish(job(project, case)))
    assert isinstance(published, Published) and published.remote_id
    if case.name in ("instagram", "threads"):
        create, publish = fake.received
        form, container = fields(create), fields(publish)["creation_id"]
        if case.name == "instagram":  # no text-only posts: the job has an image
            assert create["path"] == f"/{FakeInstagram.USER}/media"
            assert form == {
                "image_url": f"{fake.base}/media/images/photo.jpg",
                "caption": "Hello, Perú ✊🏽",
                "alt_text": "Marchers with a banner.",
            }
            assert publish["path"] == f"/{FakeInstagram.USER}/media_publish"
            assert published.url.startswith("https://www.instagram.com/p/")
        else:
            assert create["path"] == f"/{FakeThreads.USER}/threads"
            assert form == {"media_type": "TEXT", "text": "Hello, Perú ✊🏽"}
            assert publish["path"] == f"/{FakeThreads.USER}/threads_publish"
            assert published.url.startswith("https://www.threads.net/@perusolidarity/post/")
        # The container it made is the one published, once.
        assert fake.containers[container]["status"] == "PUBLISHED" and len(fake.containers) == 1
        assert fake.reads[0]["query"].get("fields") in (
            ["quota_usage,config"],
            ["quota_usage,config,reply_quota_usage,reply_config"],
        )  # the quota is read before anything is made
        assert all(r["headers"]["Authorization"] == f"Bearer {case.secret}" for r in fake.reads)
        return
    (request,) = fake.received
    body = fields(request)
    if case.name == "mastodon":
        assert request["path"] == "/api/v1/statuses"
        assert body == {"status": "Hello, Perú ✊🏽", "visibility": "public", "language": "en"}
        assert request["headers"]["Idempotency-Key"] == "postscheduler-0123456789abcde0"
        assert published.url and published.url.endswith(published.remote_id)
    elif case.name == "webhook":
        assert body["text"] == "Hello, Perú ✊🏽" and body["post_id"] == "p"
        assert request["headers"]["Idempotency-Key"] == "postscheduler-0123456789abcde0"
        assert published == Published("w1", "https://site.test/1")
    elif case.name == "x":
        assert request["path"] == "/2/tweets" and body == {"text": "Hello, Perú ✊🏽"}
        assert request["headers"]["Authorization"].startswith("OAuth ")  # verified by the fake
        assert published.url == f"https://x.com/i/web/status/{published.remote_id}"
    elif case.name == "telegram":
        assert request["path"].endswith("/sendMessage")
        assert body["text"] == "Hello, Perú ✊🏽" and body["parse_mode"] == "HTML"
        assert body["chat_id"] == "@campaign"
        assert published.url == f"https://t.me/campaign/{published.remote_id}"
    elif case.name == "discord":
        assert request["query"]["wait"] == ["true"]
        assert body == {"content": "Hello, Perú ✊🏽", "allowed_mentions": {"parse": []}}
    elif case.name == "bluesky":
        assert request["path"] == "/xrpc/com.atproto.repo.putRecord"
        assert body["record"]["text"] == "Hello, Perú ✊🏽" and body["record"]["langs"] == ["en"]
        assert body["swapRecord"] is None  # create only, under a key chosen before the call
        assert published.remote_id.startswith(f"at://{FakeBluesky.DID}/app.bsky.feed.post/")
        assert published.url.startswith("https://bsky.app/profile/campaign.test/post/")
    elif case.name == "outbox":
        assert body["text"] == "Hello, Perú ✊🏽" and body["id"] == published.remote_id
        assert published.url and published.url.startswith("file://")
    elif case.name == "facebook":
        assert request["path"] == f"/{FakeFacebook.PAGE}/feed"
        assert body == {"message": "Hello, Perú ✊🏽"}  # form-encoded, token in the header
        assert request["headers"]["Authorization"] == f"Bearer {FakeFacebook.TOKEN}"
        assert published.url == f"https://www.facebook.com/{published.remote_id}"
    elif case.name == "linkedin":
        assert request["path"] == "/rest/posts"
        assert request["headers"]["LinkedIn-Version"] == "202611"
        assert request["headers"]["X-Restli-Protocol-Version"] == "2.0.0"
        assert body["commentary"] == "Hello, Perú ✊🏽" and body["author"] == FakeLinkedIn.ORG
        assert body["visibility"] == "PUBLIC" and body["lifecycleState"] == "PUBLISHED"
        assert published.remote_id.startswith("urn:li:share:")
        assert published.url == f"https://www.linkedin.com/feed/update/{published.remote_id}/"
    else:
        assert body["text"] == "Hello, Perú ✊🏽" and body["blocks"][0]["text"]["type"] == "mrkdwn"


def test_markup_is_escaped(project: Project, case: Case, fake: FakePlatform) -> None:
    settings = settings_for(project, case, fake)
    call(settings, lambda p: p.publish(job(project, case, text="Fish & chips <b>not bold</b>")))
    body = fields(fake.received[0])
    if case.name == "mastodon":
        assert body["status"] == "Fish & chips <b>not bold</b>"  # plain text; the server escapes
    elif case.name == "bluesky":
        assert body["record"]["text"] == "Fish & chips <b>not bold</b>"  # text, not markup
    elif case.name in ("discord", "x", "webhook", "outbox"):
        plain = body.get("content", body.get("text"))
        assert plain == "Fish & chips <b>not bold</b>"  # no markup language to escape
    elif case.name in ("facebook", "instagram", "threads"):
        plain = body.get("message", body.get("caption", body.get("text")))
        assert plain == "Fish & chips <b>not bold</b>"  # Meta takes plain text
    elif case.name == "linkedin":
        assert body["commentary"] == "Fish & chips \\<b\\>not bold\\</b\\>"  # little text
        assert fake.shown() == ["Fish & chips <b>not bold</b>"]  # read back whole
    else:
        assert (body.get("text")) == "Fish &amp; chips &lt;b&gt;not bold&lt;/b&gt;"


def test_image_file_with_alt_text(project: Project, case: Case, fake: FakePlatform) -> None:
    settings = settings_for(project, case, fake)
    text = "A march.\n\n📷 Jane Doe"
    if not case.image_files:
        # Slack webhooks cannot upload: validate refuses image files for Slack before this.
        with pytest.raises(PermanentError, match="cannot upload image files"):
            call(settings, lambda p: p.publish(job(project, case, text=text, image=True)))
        assert fake.received == []
        return
    call(settings, lambda p: p.publish(job(project, case, text=text, image=True)))
    if case.name == "mastodon":
        upload, *polls, status = fake.received
        assert upload["path"] == "/api/v2/media" and upload["body"]["file"][0] == "photo.jpg"
        assert upload["body"]["description"] == "Marchers with a banner."
        media_id = polls[0]["path"].rsplit("/", 1)[1]
        assert [p["path"] for p in polls] == [f"/api/v1/media/{media_id}"] * 2  # 206, then 200
        assert fields(status)["media_ids[]"] == media_id
        return
    if case.name == "x":
        upload, metadata, tweet = fake.received
        assert upload["path"] == "/2/media/upload" and upload["body"]["media"][0] == "photo.jpg"
        assert upload["body"]["media_category"] == "tweet_image"
        assert metadata["body"] == {
            "id": "555",
            "metadata": {"alt_text": {"text": "Marchers with a banner."}},
        }
        assert tweet["body"] == {"text": text, "media": {"media_ids": ["555"]}}
        return
    if case.name == "bluesky":
        upload, record = fake.received
        assert upload["path"] == "/xrpc/com.atproto.repo.uploadBlob"
        assert upload["raw"][:2] == b"\xff\xd8"  # the JPEG itself, EXIF removed
        embed = record["body"]["record"]["embed"]
        assert embed["$type"] == "app.bsky.embed.images"
        assert embed["images"][0]["alt"] == "Marchers with a banner."
        assert record["body"]["record"]["text"] == text
        return
    if case.name == "facebook":
        (request,) = fake.received
        assert request["path"] == f"/{FakeFacebook.PAGE}/photos"
        body = request["body"]  # multipart: the photo's bytes
        assert body["source"][0] == "photo.jpg" and body["source"][1][:2] == b"\xff\xd8"
        assert (body["message"], body["alt_text_custom"]) == (text, "Marchers with a banner.")
        assert fake.posts[-1]["message"] == text  # type: ignore[attr-defined]
        return
    if case.name in ("instagram", "threads"):
        create = fields(fake.received[0])
        assert create["image_url"] == f"{fake.base}/media/images/photo.jpg"  # under media_url
        assert create["alt_text"] == "Marchers with a banner."
        assert create.get("caption", create.get("text")) == text
        if case.name == "threads":
            assert create["media_type"] == "IMAGE"
        return
    if case.name == "linkedin":
        init, put, post = fake.received
        assert init["query"]["action"] == ["initializeUpload"]
        assert init["body"] == {"initializeUploadRequest": {"owner": FakeLinkedIn.ORG}}
        assert put["method"] == "PUT" and put["raw"][:2] == b"\xff\xd8"
        urn = post["body"]["content"]["media"]["id"]
        assert urn.startswith("urn:li:image:")
        assert post["body"]["content"]["media"]["altText"] == "Marchers with a banner."
        assert fake.shown() == [text]  # type: ignore[attr-defined]
        return
    (request,) = fake.received
    body = request["body"]
    if case.name in ("webhook", "outbox"):  # the image's details, not its bytes
        assert body["image"] == {
            "file": "images/photo.jpg",
            "url": None,
            "alt": "Marchers with a banner.",
            "credit": "Jane Doe",
        }
    elif case.name == "telegram":
        assert request["path"].endswith("/sendPhoto")
        assert body["caption"] == text and body["photo"][0] == "photo.jpg"
        assert body["photo"][1][:2] == b"\xff\xd8"  # the JPEG's bytes
    else:
        payload = json.loads(body["payload_json"])
        assert payload["attachments"] == [
            {"id": 0, "filename": "photo.jpg", "description": "Marchers with a banner."}
        ]
        assert payload["content"] == text and body["files[0]"][0] == "photo.jpg"


def test_image_by_url(project: Project, case: Case, fake: FakePlatform) -> None:
    settings = settings_for(project, case, fake)
    image = Image(url="https://example.org/a.jpg", alt="Marchers.", credit="Jane Doe")
    the_job = dataclasses.replace(job(project, case, text="A march.\n\n📷 Jane Doe"), image=image)
    if case.name in UPLOADERS:
        # These upload the bytes: the image is fetched from its URL first (from the fake)
        url = f"{fake.base}/{'media' if case.name == 'x' else 'public'}/a.jpg"
        the_job = dataclasses.replace(the_job, image=image.model_copy(update={"url": url}))
    call(settings, lambda p: p.publish(the_job))
    body = fields(fake.received[0])
    if case.name in ("facebook", "instagram", "threads"):  # Meta fetches the address itself
        assert (body.get("url") or body.get("image_url")) == "https://example.org/a.jpg"
        assert body.get("alt_text_custom", body.get("alt_text")) == "Marchers."
    elif case.name == "linkedin":
        download, _, put, _ = fake.received  # downloaded, then uploaded
        assert download["path"] == "/public/a.jpg" and put["raw"][:2] == b"\xff\xd8"
    elif case.name == "mastodon":
        assert fake.received[1]["body"]["file"] == ("a.jpg", b"\xff\xd8\xff\xe0 a jpeg")
        assert fields(fake.received[-1])["media_ids[]"]
    elif case.name in ("webhook", "outbox"):
        assert body["image"]["url"] == "https://example.org/a.jpg"
    elif case.name == "bluesky":
        download, upload, record = fake.received
        assert download["path"] == "/public/a.jpg" and upload["raw"][:2] == b"\xff\xd8"
        assert record["body"]["record"]["embed"]["images"][0]["alt"] == "Marchers."
    elif case.name == "x":
        download, upload = fake.received[0], fake.received[1]
        assert download["path"] == "/media/a.jpg"
        assert upload["body"]["media"] == ("a.jpg", b"\xff\xd8\xff\xe0 a jpeg")
        assert fake.received[-1]["body"]["media"] == {"media_ids": ["555"]}
    elif case.name == "telegram":
        assert body["photo"] == "https://example.org/a.jpg" and "Jane Doe" in body["caption"]
    elif case.name == "discord":
        assert body["embeds"] == [{"image": {"url": "https://example.org/a.jpg"}}]
        assert "Jane Doe" in body["content"]
    else:
        assert body["blocks"][1] == {
            "type": "image",
            "image_url": "https://example.org/a.jpg",
            "alt_text": "Marchers.",
        }
        assert "Jane Doe" in body["text"]


@pytest.mark.parametrize("case", [c for c in CASES if c.name in UPLOADERS], ids=lambda c: c.name)
def test_an_image_url_on_a_private_address_is_never_fetched(
    project: Project, case: Case, fake: FakePlatform
) -> None:
    """An image.url inside the organisation's network is refused before any request, on every
    platform that downloads images to upload them."""
    settings = settings_for(project, case, fake, allow_private=False)
    image = Image(url=f"{fake.base}/internal-only/secret.json", alt="A.", credit="B")
    the_job = dataclasses.replace(job(project, case, text="A.\n\n📷 B"), image=image)
    with pytest.raises(PermanentError, match="private or local address"):
        call(settings, lambda p: p.publish(the_job))
    assert not [r for r in fake.received if "internal-only" in r["path"]]


def test_thread_part_replies_where_the_platform_can(
    project: Project, case: Case, fake: FakePlatform
) -> None:
    settings = settings_for(project, case, fake)

    async def thread(publisher: Publisher) -> Published:
        first = await publisher.publish(job(project, case))
        await publisher.publish(job(project, case, text="Part two.", part=1, reply_to=first))
        return first

    first = call(settings, thread)
    body = fields(fake.received[-1])
    assert first.remote_id
    if case.name == "mastodon":
        assert body["in_reply_to_id"] == first.remote_id
    elif case.name in ("webhook", "outbox"):
        assert body["in_reply_to"] == first.remote_id and body["part"] == 2
    elif case.name == "x":
        assert body["reply"] == {"in_reply_to_tweet_id": first.remote_id}
    elif case.name == "telegram":
        assert body["reply_parameters"] == {"message_id": int(first.remote_id)}
    elif case.name == "bluesky":
        reply = body["record"]["reply"]
        assert reply["parent"]["uri"] == reply["root"]["uri"] == first.remote_id
    elif case.name == "threads":  # a real reply: the container names its parent
        create = fields(fake.received[-2])
        assert create["reply_to_id"] == first.remote_id and create["text"] == "Part two."
    elif case.name in ("facebook", "instagram"):  # a comment on the post
        assert fake.received[-1]["path"] == f"/{first.remote_id}/comments"
        assert body == {"message": "Part two."}
    elif case.name == "linkedin":
        assert body["object"] == first.remote_id and body["message"] == {"text": "Part two."}
        assert body["actor"] == FakeLinkedIn.ORG
    else:
        assert "reply" not in str(body)  # webhooks cannot reply: consecutive messages


@http_only
def test_5xx_is_transient(project: Project, case: Case, fake: FakePlatform) -> None:
    fake.faults.append((502, {"Content-Type": "text/plain"}, b"Bad Gateway"))
    with pytest.raises(TransientError, match="502"):
        call(settings_for(project, case, fake), lambda p: p.publish(job(project, case)))


@http_only
@pytest.mark.parametrize(
    "body",
    [b"[1, 2]", b'"Bad Gateway"', b"null", b'{"parameters": [], "retry_after": "soon"}'],
    ids=["list", "string", "null", "odd-fields"],
)
def test_an_error_body_of_any_shape_is_still_retried(
    project: Project, case: Case, fake: FakePlatform, body: bytes
) -> None:
    """A proxy or a broken server answers 502 or 429 with JSON that is no error object:
    nothing was published, so it is a retry, never an unknown outcome."""
    settings = settings_for(project, case, fake)
    for status in (502, 429):
        fake.faults.append((status, {"Content-Type": "application/json"}, body))
        with pytest.raises(TransientError, match=str(status)):
            call(settings, lambda p: p.publish(job(project, case)))


@http_only
def test_429_honours_the_platform_s_wait(project: Project, case: Case, fake: FakePlatform) -> None:
    fake.faults.append(case.rate_limited())
    with pytest.raises(TransientError) as info:
        call(settings_for(project, case, fake), lambda p: p.publish(job(project, case)))
    if case.retry_after is None:
        assert info.value.retry_after is None
    else:
        assert info.value.retry_after == pytest.approx(case.retry_after, abs=2)


@http_only
def test_rejection_is_permanent_with_the_platform_s_words(
    project: Project, case: Case, fake: FakePlatform
) -> None:
    fake.faults.append(case.rejected)
    with pytest.raises(PermanentError) as info:
        call(settings_for(project, case, fake), lambda p: p.publish(job(project, case)))
    assert case.rejected_text in info.value.message


@http_only
def test_lost_response_is_an_unknown_outcome(
    project: Project, case: Case, fake: FakePlatform
) -> None:
    fake.faults.append("lose")
    with pytest.raises(OutcomeUnknownError):
        call(settings_for(project, case, fake), lambda p: p.publish(job(project, case)))
    assert len(fake.received) == 1  # it did arrive


def test_not_idempotent(case: Case) -> None:
    from postscheduler.publishers import publisher_class

    # Only where a resend is harmless may the engine resend after an unknown outcome.
    assert publisher_class(case.name).idempotent is case.idempotent


def test_check_credentials(project: Project, case: Case, fake: FakePlatform) -> None:
    settings = settings_for(project, case, fake)
    described = call(settings, lambda p: p.check_credentials())
    assert case.secret not in described
    if case.verifiable:  # Slack and webhooks have nothing to ask
        shutil.rmtree(project.root / ".postscheduler", ignore_errors=True)  # no kept session
        wrong = {k: v.replace("canary", "zzbogus") for k, v in case.env(fake).items()}
        with pytest.raises(PermanentError) as info:
            call(settings_for(project, case, fake, wrong), lambda p: p.check_credentials())
        assert "canary" not in info.value.message and "zzbogus" not in info.value.message


@http_only
def test_secret_never_in_errors(project: Project, case: Case, fake: FakePlatform) -> None:
    for fault in (case.rejected, "lose", (500, {}, b"oops")):
        fake.faults.append(fault)
        with pytest.raises(Exception) as info:
            call(settings_for(project, case, fake), lambda p: p.publish(job(project, case)))
        assert case.secret not in str(info.value) and case.secret not in repr(info.value)


@http_only
def test_an_error_page_echoing_the_request_leaks_no_secret(
    project: Project, case: Case, fake: FakePlatform
) -> None:
    """Whatever a server repeats back (the URL path holding a webhook token, the headers with
    the credentials), what reaches the ledger and the logs has every secret masked."""
    from postscheduler.redact import Redactor

    settings = settings_for(project, case, fake)
    redact = Redactor.for_settings(settings)
    fake.faults.append("echo")
    with pytest.raises(TransientError) as info:
        call(settings, lambda p: p.publish(job(project, case)))
    shown = redact(info.value.message)
    assert "500" in shown
    for value in [case.secret, *case.env(fake).values()]:
        assert value not in shown
    assert "canary" not in shown.lower()


HOSTILE_ANSWERS = {
    "429-retry-after-inf": (429, {"Retry-After": "inf"}, b""),
    "429-retry-after-nan": (429, {"Retry-After": "nan"}, b""),
    "429-retry-after-1e400": (429, {"Retry-After": "1e400"}, b""),
    "429-retry-after-garbage-date": (429, {"Retry-After": "Mon, 99 Foo 99999"}, b""),
    "429-resets-1e20": (
        429,
        {"x-rate-limit-reset": "1e20", "RateLimit-Reset": "1e20", "X-RateLimit-Reset": "1e20"},
        b"",
    ),
    "429-json-retry-after-huge": (
        429,
        {"Content-Type": "application/json"},
        b'{"retry_after": 1e400, "parameters": {"retry_after": 1e400}}',
    ),
    "401": (401, {"Content-Type": "application/json"}, b'{"error": "unauthorized"}'),
    "500-control-characters": (500, {}, b"\x1b]0;owned\x07\x1b[2J\r oops"),
    "500-invalid-json": (500, {"Content-Type": "application/json"}, b"{not json"),
}


@http_only
@pytest.mark.parametrize("answer", list(HOSTILE_ANSWERS), ids=list(HOSTILE_ANSWERS))
def test_a_hostile_answer_is_one_of_the_contract_s_errors(
    project: Project, case: Case, fake: FakePlatform, answer: str
) -> None:
    """Whatever a broken or hostile server answers, the publisher raises one of the three
    errors the engine handles, with a finite retry hint or none (no crash, no wait of years)."""
    fake.faults.append(HOSTILE_ANSWERS[answer])
    with pytest.raises((TransientError, PermanentError, OutcomeUnknownError)) as info:
        call(settings_for(project, case, fake), lambda p: p.publish(job(project, case)))
    if isinstance(info.value, TransientError) and info.value.retry_after is not None:
        assert math.isfinite(info.value.retry_after)


# 2xx answers that are not what the API documents: a captive portal's page, a body cut
# short, a list where an object is documented, ids of the wrong kind.
ODD_SUCCESSES = [b"", b"null", b"[]", b'"ok"', b"{}", b"<html>Sign in to the Wi-Fi</html>"]
ODD_SUCCESSES += [b'{"id": null}', b'{"id": {"a": 1}}', b'{"data": []}', b'{"value": [1]}']
ODD_SUCCESSES += [b'{"ok": true, "result": []}', b'{"uri": null, "cid": 5}', b"\xff\xfe{"]


@http_only
@pytest.mark.parametrize("step", [0, 1], ids=["first-request", "second-request"])
def test_an_odd_success_is_published_or_one_of_the_contract_s_errors(
    project: Project, case: Case, fake: FakePlatform, step: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2xx whose body cannot be read may mean the platform acted (or a proxy answered in
    its place): the outcome is unknown, never a KeyError in the engine's log."""
    from postscheduler.publishers import graph, mastodon

    # An odd answer to a status check is polled again: at once here, not seconds apart.
    monkeypatch.setattr(graph, "CONTAINER_POLL_EVERY", 0.0)
    monkeypatch.setattr(mastodon, "MEDIA_POLL_FIRST", 0.0)
    odd = []
    for body in ODD_SUCCESSES:
        for image in (False, True):
            fake.faults.clear()
            fake.faults.extend([None] * step + [(200, {"Content-Type": "application/json"}, body)])
            the_job = job(project, case, image=image)
            try:
                published = call(
                    settings_for(project, case, fake), lambda p, j=the_job: p.publish(j)
                )
            except (TransientError, PermanentError, OutcomeUnknownError):
                continue
            except Exception as exc:  # what this test looks for
                odd.append(f"{body[:30]!r} image={image}: {type(exc).__name__}: {exc}")
                continue
            if not (isinstance(published.remote_id, str) and published.remote_id):
                odd.append(f"{body[:30]!r} image={image}: published as {published.remote_id!r}")
    assert not odd, "\n".join(odd)


@http_only
def test_missing_secret_is_permanent(project: Project, case: Case, fake: FakePlatform) -> None:
    with pytest.raises(PermanentError, match="not set"):
        call(settings_for(project, case, fake, {}), lambda p: p.publish(job(project, case)))
