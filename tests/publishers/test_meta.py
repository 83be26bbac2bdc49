"""Facebook, Instagram and Threads beyond the contract: containers after a crash or a lost
answer, the publishing quota, throttling, kept tokens, finding a lost post, and the recorded
real Graph API answers (``../shared/interop/meta``) read as the fakes' are."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from postscheduler.publishers import (
    OutcomeUnknownError,
    PermanentError,
    Published,
    Resolution,
    TransientError,
    make_publisher,
)
from postscheduler.publishers.graph import error_text, is_transient, usage_wait

from ..conftest import Project, shared_file
from ..fakes.meta import FakeFacebook, FakeInstagram, FakeThreads
from .test_contract import CASES, call, job, settings_for

IG = next(c for c in CASES if c.name == "instagram")
THREADS = next(c for c in CASES if c.name == "threads")
FB = next(c for c in CASES if c.name == "facebook")


@pytest.fixture
def instagram() -> Iterator[FakeInstagram]:
    with FakeInstagram() as fake:
        yield fake


@pytest.fixture
def threads() -> Iterator[FakeThreads]:
    with FakeThreads() as fake:
        yield fake


def now_due(the_job: Any) -> Any:
    """The job due a minute ago: a look-up only takes posts made after it was due."""
    return dataclasses.replace(the_job, due_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))


def recorded(progress: list[str]) -> Any:
    async def checkpoint(value: str) -> None:
        progress.append(value)

    return checkpoint


def test_the_container_is_recorded_before_it_is_published(
    project: Project, instagram: FakeInstagram
) -> None:
    settings = settings_for(project, IG, instagram)
    progress: list[str] = []
    the_job = dataclasses.replace(job(project, IG), checkpoint=recorded(progress))
    published = call(settings, lambda p: p.publish(the_job))
    (container,) = instagram.containers
    assert progress == [json.dumps({"container": container})]
    assert instagram.containers[container]["status"] == "PUBLISHED"
    assert published.remote_id == instagram.media[0]["id"]


@pytest.mark.parametrize("fake_class", [FakeInstagram, FakeThreads], ids=["instagram", "threads"])
def test_a_lost_publish_answer_is_found_by_the_container_never_published_twice(
    project: Project, fake_class: type[FakeInstagram]
) -> None:
    case = IG if fake_class is FakeInstagram else THREADS
    with fake_class() as fake:
        settings = settings_for(project, case, fake)
        progress: list[str] = []
        the_job = dataclasses.replace(now_due(job(project, case)), checkpoint=recorded(progress))
        # The create is answered; the publish is carried out and its answer lost.
        original = fake.faultable
        fake.faultable = lambda r: r["path"].endswith("_publish")  # type: ignore[method-assign]
        fake.faults.append("lose")
        with pytest.raises(OutcomeUnknownError):
            call(settings, lambda p: p.publish(the_job))
        fake.faultable = original  # type: ignore[method-assign]
        assert len(fake.media) == 1  # it did go out
        again = dataclasses.replace(the_job, progress=progress[-1], attempt=2)
        found = call(settings, lambda p: p.resolve_in_doubt(again))
        assert found == Published(fake.media[0]["id"], fake.media[0]["permalink"])
        # And an attempt that publishes again finds it too, making nothing new.
        assert call(settings, lambda p: p.publish(again)) == found
        assert len(fake.media) == 1 and len(fake.containers) == 1


def test_after_a_crash_a_finished_container_is_published_an_expired_one_replaced(
    project: Project, instagram: FakeInstagram
) -> None:
    settings = settings_for(project, IG, instagram)
    progress: list[str] = []
    the_job = dataclasses.replace(job(project, IG), checkpoint=recorded(progress))
    # A crash after the container was made and recorded, before it was published.
    instagram.faultable = lambda r: r["method"] == "POST" and "media_publish" in r["path"]  # type: ignore[method-assign]
    instagram.faults.append("drop")
    with pytest.raises((OutcomeUnknownError, TransientError)):
        call(settings, lambda p: p.publish(the_job))
    (container,) = instagram.containers
    in_doubt = dataclasses.replace(the_job, progress=progress[-1])
    assert call(settings, lambda p: p.resolve_in_doubt(in_doubt)) is Resolution.NOT_SENT
    instagram.expire(container)  # a day later: Meta expired it
    published = call(settings, lambda p: p.publish(in_doubt))
    assert len(instagram.containers) == 2 and len(instagram.media) == 1
    assert published.remote_id == instagram.media[0]["id"]
    assert progress[-1] != progress[0]  # the new container is the one recorded


def test_nothing_recorded_means_nothing_published(project: Project, threads: FakeThreads) -> None:
    settings = settings_for(project, THREADS, threads)
    assert (
        call(settings, lambda p: p.resolve_in_doubt(job(project, THREADS))) is Resolution.NOT_SENT
    )


def test_a_full_quota_is_a_retry_after_the_window_not_a_failure(
    project: Project, instagram: FakeInstagram
) -> None:
    settings = settings_for(project, IG, instagram)
    instagram.quota_usage = instagram.quota_total = 25
    with pytest.raises(TransientError, match="25 of 25 posts") as info:
        call(settings, lambda p: p.publish(job(project, IG)))
    assert info.value.retry_after and info.value.retry_after >= 600
    assert instagram.containers == {}  # nothing made while the quota is full


def test_throttling_codes_are_transient_with_meta_s_wait(
    project: Project, instagram: FakeInstagram
) -> None:
    settings = settings_for(project, IG, instagram)
    for code in (4, 17, 32, 613, 80001):
        _, headers, _ = IG.rate_limited()
        body = json.dumps({"error": {"message": f"(#{code}) limit", "code": code}}).encode()
        instagram.faults.append((400, headers, body))
        with pytest.raises(TransientError) as info:
            call(settings, lambda p: p.publish(job(project, IG)))
        assert info.value.retry_after == 120.0


def test_an_expired_token_says_re_authorize(project: Project, instagram: FakeInstagram) -> None:
    settings = settings_for(project, IG, instagram, {"IG_TOKEN": "canary-expired"})
    with pytest.raises(PermanentError) as info:
        call(settings, lambda p: p.publish(job(project, IG)))
    assert "code 190" in info.value.message and "re-authorize" in info.value.message
    assert "canary" not in info.value.message


def test_a_day_old_token_is_refreshed_and_the_newest_kept_privately(
    project: Project, threads: FakeThreads
) -> None:
    settings = settings_for(project, THREADS, threads)
    call(settings, lambda p: p.publish(job(project, THREADS)))
    assert threads.refreshes == 0  # its age is unknown: counted from first use
    kept_file = project.root / ".postscheduler" / "threads-acct.session"
    assert not kept_file.exists()

    async def publish_a_day_later(p: Any) -> Any:
        await p.token()
        p._kept["since"] = time.time() - 90_000
        return await p.publish(job(project, THREADS, text="Second post."))

    call(settings, publish_a_day_later)
    assert threads.refreshes == 1
    kept = json.loads(kept_file.read_text())
    assert kept["token"] == f"{FakeThreads.TOKEN}-REFRESHED-1"
    assert stat.S_IMODE(kept_file.stat().st_mode) == 0o600
    assert threads.received[-1]["headers"]["Authorization"] == f"Bearer {kept['token']}"
    # The next process uses the kept token, and says when it expires.
    publisher = make_publisher("acct", settings, http=None)
    assert publisher.credential_warnings(dt.datetime.now(dt.UTC)) == []
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=55)
    (warning,) = publisher.credential_warnings(soon)
    assert "expires on" in warning and "re-authorize" in warning


def test_a_lost_facebook_post_is_found_among_the_page_s_posts(project: Project) -> None:
    with FakeFacebook() as fb:
        settings = settings_for(project, FB, fb)
        fb.faults.append("lose")
        the_job = now_due(job(project, FB, text="Solidarity with Peru."))
        with pytest.raises(OutcomeUnknownError):
            call(settings, lambda p: p.publish(the_job))
        found = call(settings, lambda p: p.resolve_in_doubt(the_job))
        assert found == Published(fb.posts[0]["id"], fb.posts[0]["permalink_url"])
        other = job(project, FB, text="Never sent.")
        assert call(settings, lambda p: p.resolve_in_doubt(other)) is Resolution.UNKNOWN
        # A comment (thread part) likewise, among the post's comments.
        root = Published(fb.posts[0]["id"])
        part = now_due(job(project, FB, text="Part two.", part=1, reply_to=root))
        fb.faults.append("lose")
        with pytest.raises(OutcomeUnknownError):
            call(settings, lambda p: p.publish(part))
        found = call(settings, lambda p: p.resolve_in_doubt(part))
        assert found.remote_id == fb.comments[root.remote_id][0]["id"]


def test_the_same_words_twice_on_facebook_is_explained(project: Project) -> None:
    with FakeFacebook() as fb:
        settings = settings_for(project, FB, fb)
        call(settings, lambda p: p.publish(job(project, FB)))
        with pytest.raises(PermanentError, match=r"506.*change the text"):
            call(settings, lambda p: p.publish(job(project, FB)))


# --- the recorded answers of the real Graph API ----------------------------------------------


def meta_recording(relative: str) -> bytes:
    return shared_file(f"meta/python-facebook-testdata/{relative}").read_bytes()


def replay(answers: dict[str, bytes]) -> Any:
    """Settings whose publisher talks to a MockTransport answering each path's recording."""

    def handler(request: httpx.Request) -> httpx.Response:
        for suffix, body in answers.items():
            if request.url.path.endswith(suffix):
                return httpx.Response(
                    200, content=body, headers={"Content-Type": "application/json"}
                )
        return httpx.Response(404, json={"error": {"message": "not recorded", "code": 100}})

    return httpx.MockTransport(handler)


def run_with(transport: httpx.MockTransport, settings: Any, fn: Any) -> Any:
    import asyncio

    async def go() -> Any:
        async with httpx.AsyncClient(transport=transport) as http:
            return await fn(make_publisher("acct", settings, http=http))

    return asyncio.run(go())


def test_recorded_instagram_publishing_answers_are_read(project: Project) -> None:
    """create_photo.json (the container id), container_info.json (FINISHED),
    publish_container.json (the media id), content_publish_limit.json (the quota)."""
    with FakeInstagram() as fake:
        settings = settings_for(project, IG, fake)
    container = json.loads(meta_recording("instagram/apidata/publish/create_photo.json"))["id"]
    transport = replay(
        {
            "/content_publishing_limit": meta_recording(
                "instagram/apidata/users/content_publish_limit.json"
            ),
            "/media": meta_recording("instagram/apidata/publish/create_photo.json"),
            f"/{container}": meta_recording("instagram/apidata/publish/container_info.json"),
            "/media_publish": meta_recording("instagram/apidata/publish/publish_container.json"),
        },
    )
    published = run_with(transport, settings, lambda p: p.publish(job(project, IG)))
    assert published.remote_id == "17920238422030506"


def test_recorded_instagram_quota_shapes_are_read(project: Project) -> None:
    with FakeInstagram() as fake:
        settings = settings_for(project, IG, fake)
    limit = json.loads(meta_recording("instagram/apidata/publish/publish_limit_resp.json"))
    limit["data"][0]["quota_usage"] = limit["data"][0]["config"]["quota_total"]
    transport = replay({"/content_publishing_limit": json.dumps(limit).encode()})
    with pytest.raises(TransientError, match="25 of 25"):
        run_with(transport, settings, lambda p: p.publish(job(project, IG)))


def test_recorded_facebook_posts_and_comments_are_searched(project: Project) -> None:
    """feed_fields_p1.json (a Page's posts) and comments_p1.json (a post's comments), as a
    lost answer's look-up reads them."""
    with FakeFacebook() as fake:
        settings = settings_for(project, FB, fake)
    feed = json.loads(meta_recording("facebook/apidata/posts/feed_fields_p1.json"))
    first = feed["data"][0]
    transport = replay({"/published_posts": json.dumps(feed).encode()})
    the_job = dataclasses.replace(
        job(project, FB, text=first["message"]),
        due_at=dt.datetime.fromisoformat(first["created_time"]) - dt.timedelta(minutes=1),
    )
    found = run_with(transport, settings, lambda p: p.resolve_in_doubt(the_job))
    assert found.remote_id == first["id"]
    comments = json.loads(meta_recording("facebook/apidata/comments/comments_p1.json"))
    comment = comments["data"][0]
    transport = replay({"/comments": json.dumps(comments).encode()})
    part = dataclasses.replace(
        job(project, FB, text=comment["message"], part=1, reply_to=Published("19292868552_1")),
        due_at=dt.datetime.fromisoformat(comment["created_time"]) - dt.timedelta(minutes=1),
    )
    # The recording asked for no id field: a comment without an id cannot be recorded as the
    # delivery, so it stays for a person to decide, never resent.
    assert run_with(transport, settings, lambda p: p.resolve_in_doubt(part)) is Resolution.UNKNOWN


@pytest.mark.parametrize(
    "recording", ["error.json", "base/error_data.json"], ids=["error", "error_data"]
)
def test_recorded_error_envelopes_read_as_meta_s_words(recording: str) -> None:
    body = meta_recording(recording)
    response = httpx.Response(400, content=body, headers={"Content-Type": "application/json"})
    assert error_text(response).startswith("(#100) ") and "[code 100]" in error_text(response)
    assert not is_transient(response) and usage_wait(response) is None


def test_recorded_token_answers_are_kept(project: Project, tmp_path: Path) -> None:
    """threads_user_long_lived_token.json: what a refresh answers."""
    with FakeThreads() as fake:
        settings = settings_for(project, THREADS, fake)
    body = meta_recording("base/threads_user_long_lived_token.json")
    transport = replay({"/refresh_access_token": body})

    async def refresh(p: Any) -> Any:
        await p.token()
        p._kept["since"] = time.time() - 90_000
        return await p.token()

    assert run_with(transport, settings, refresh) == json.loads(body)["access_token"]
