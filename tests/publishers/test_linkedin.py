"""LinkedIn beyond the contract: little text for every reserved character (read back as
LinkedIn reads it), article cards, a retired version, duplicates, lost answers, the token's
expiry and where the upload token may go."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from postscheduler.platforms.linkedin import RESERVED, little_text
from postscheduler.publishers import OutcomeUnknownError, PermanentError, Published, Resolution

from ..conftest import Project
from ..fakes.linkedin import FakeLinkedIn, read_little_text
from .test_contract import CASES, call, job, settings_for

LI = next(c for c in CASES if c.name == "linkedin")


@pytest.fixture
def linkedin() -> Iterator[FakeLinkedIn]:
    with FakeLinkedIn() as fake:
        yield fake


@pytest.mark.parametrize("char", sorted(RESERVED))
def test_every_reserved_character_is_escaped_and_survives(char: str) -> None:
    text = f"before {char} after"
    sent = little_text(text)
    assert sent == f"before \\{char} after"
    assert read_little_text(sent) == text
    assert read_little_text(text) != text  # unescaped, LinkedIn would cut it


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("Join #PeruSolidarity now", "Join {hashtag|\\#|PeruSolidarity} now"),
        ("#Perú_2027", "{hashtag|\\#|Perú\\_2027}"),
        ("email a@b.org", "email a\\@b.org"),
        ("see https://a.org/x_(y)#top", "see https://a.org/x\\_\\(y\\)\\#top"),
        ("C# & F#", "C\\# & F\\#"),
        ("plain words, no markup", "plain words, no markup"),
    ],
)
def test_little_text_vectors(text: str, sent: str) -> None:
    assert little_text(text) == sent
    assert read_little_text(sent) == text


def test_a_whole_campaign_text_reaches_linkedin_uncut(
    project: Project, linkedin: FakeLinkedIn
) -> None:
    text = "Solidarity (all week) with @Lima_workers! #Peru *now* ~ [updates] <here> | {x} \\o/"
    call(settings_for(project, LI, linkedin), lambda p: p.publish(job(project, LI, text=text)))
    assert linkedin.shown() == [text]


def test_a_link_post_is_an_article_card_with_the_page_s_title_and_image(
    project: Project, linkedin: FakeLinkedIn
) -> None:
    settings = settings_for(project, LI, linkedin)
    link = f"{linkedin.base}/public/article"
    the_job = dataclasses.replace(job(project, LI, text=f"Read this: {link}"), link=link)
    call(settings, lambda p: p.publish(the_job))
    article = linkedin.posts[-1]["content"]["article"]
    assert article["source"] == link and article["title"] == "Solidarity with Peru"
    assert article["description"] == "What happened in Lima."
    assert linkedin.images[article["thumbnail"]]  # uploaded before the post named it


def test_a_retired_version_says_which_setting_to_change(
    project: Project, linkedin: FakeLinkedIn
) -> None:
    project.config_path.write_text("")
    settings = settings_for(project, LI, linkedin)
    old = settings.config.accounts["acct"].model_copy(update={"version": "202401"})
    settings = dataclasses.replace(
        settings, config=settings.config.model_copy(update={"accounts": {"acct": old}})
    )
    with pytest.raises(PermanentError) as info:
        call(settings, lambda p: p.publish(job(project, LI)))
    assert info.value.status == 426
    assert "202401" in info.value.message and "`version:` under accounts.acct" in info.value.message


def test_a_duplicate_after_a_lost_answer_is_the_published_post(
    project: Project, linkedin: FakeLinkedIn
) -> None:
    settings = settings_for(project, LI, linkedin)
    progress: list[str] = []

    async def checkpoint(value: str) -> None:
        progress.append(value)

    the_job = dataclasses.replace(
        job(project, LI), checkpoint=checkpoint, due_at=dt.datetime.now(dt.UTC)
    )
    linkedin.faults.append("lose")
    with pytest.raises(OutcomeUnknownError):
        call(settings, lambda p: p.publish(the_job))
    urn = linkedin.posts[0]["id"]
    again = dataclasses.replace(the_job, progress=progress[-1], attempt=2)
    # Looked for among the author's posts...
    assert call(settings, lambda p: p.resolve_in_doubt(again)) == Published(
        urn, f"https://www.linkedin.com/feed/update/{urn}/"
    )
    # ...and a resend LinkedIn refuses as a duplicate is that post, not a second one.
    assert call(settings, lambda p: p.publish(again)).remote_id == urn
    assert len(linkedin.posts) == 1


def test_a_first_attempt_refused_as_a_duplicate_names_the_existing_post(
    project: Project, linkedin: FakeLinkedIn
) -> None:
    settings = settings_for(project, LI, linkedin)
    call(settings, lambda p: p.publish(job(project, LI)))
    with pytest.raises(PermanentError) as info:
        call(settings, lambda p: p.publish(job(project, LI)))
    assert info.value.status == 422 and linkedin.posts[0]["id"] in info.value.message
    assert "resolve" in info.value.message


def test_a_lost_post_not_found_is_unknown(project: Project, linkedin: FakeLinkedIn) -> None:
    settings = settings_for(project, LI, linkedin)
    assert call(settings, lambda p: p.resolve_in_doubt(job(project, LI))) is Resolution.UNKNOWN


def test_the_token_s_expiry_is_warned_two_weeks_ahead(
    project: Project, linkedin: FakeLinkedIn
) -> None:
    settings = settings_for(project, LI, linkedin)
    acct = settings.config.accounts["acct"].model_copy(
        update={"token_expires": dt.date(2027, 3, 1)}
    )
    settings = dataclasses.replace(
        settings, config=settings.config.model_copy(update={"accounts": {"acct": acct}})
    )

    def warnings(now: dt.datetime) -> Any:
        return call(settings, lambda p: _sync(p.credential_warnings(now)))

    assert warnings(dt.datetime(2027, 2, 1, tzinfo=dt.UTC)) == []
    (soon,) = warnings(dt.datetime(2027, 2, 20, tzinfo=dt.UTC))
    assert "expires on 2027-03-01" in soon and "in 9 days" in soon
    (past,) = warnings(dt.datetime(2027, 3, 2, tzinfo=dt.UTC))
    assert "expired on 2027-03-01" in past


async def _sync(value: Any) -> Any:
    return value


def test_the_token_goes_only_to_linkedin_s_hosts(project: Project, linkedin: FakeLinkedIn) -> None:
    """The upload address comes from the answer: a server naming a foreign host gets the
    bytes without the token."""
    settings = settings_for(project, LI, linkedin)
    call(settings, lambda p: p.publish(job(project, LI, image=True)))
    assert linkedin.upload_authorization == [f"Bearer {FakeLinkedIn.TOKEN}"]  # same host
    from postscheduler.publishers.linkedin import LinkedInPublisher

    assert (
        LinkedInPublisher.post_url("urn:li:share:1")
        == "https://www.linkedin.com/feed/update/urn:li:share:1/"
    )


def test_accounts_check_warns_of_a_token_about_to_expire(
    project: Project, linkedin: FakeLinkedIn
) -> None:
    import asyncio

    from postscheduler.delivery.operations import check_accounts

    soon = (dt.date.today() + dt.timedelta(days=5)).isoformat()
    settings = settings_for(project, LI, linkedin)
    project.config_path.write_text(
        project.config_path.read_text().replace(
            "version: 202611", f"version: 202611, token_expires: {soon}"
        )
    )
    from postscheduler.config import load_settings

    settings = load_settings(project.config_path, environ=LI.env(linkedin))
    (result,) = asyncio.run(check_accounts(settings))
    assert result.ok and result.detail == f"Peru Solidarity Campaign ({FakeLinkedIn.ORG})"
    (warning,) = result.warnings
    assert f"expires on {soon}" in warning and "acct" in warning
