"""Telegram specifics: a post too long for a photo caption."""

from __future__ import annotations

import dataclasses

import pytest

from postscheduler.errors import OutcomeUnknownError
from postscheduler.platforms import get_platform
from postscheduler.publishers import PublishJob

from ..conftest import Project
from ..fakes.platforms import FakePlatform, FakeTelegram
from .test_contract import CASES, call, job, settings_for

TELEGRAM = next(c for c in CASES if c.name == "telegram")


def split_job(project: Project, text: str) -> PublishJob:
    """A job with an image whose messages are split as render splits them."""
    the_job = job(project, TELEGRAM, text=text, image=True)
    assert the_job.image is not None
    messages = get_platform("telegram").messages(text, the_job.image, "📷 Jane Doe")
    return dataclasses.replace(the_job, messages=messages)


@pytest.fixture
def fake() -> FakePlatform:
    with FakeTelegram() as f:
        yield f


def test_long_text_goes_as_photo_with_credit_then_a_reply(
    project: Project, fake: FakePlatform
) -> None:
    settings = settings_for(project, TELEGRAM, fake)
    text = "x" * 1100 + "\n\n📷 Jane Doe"
    published = call(settings, lambda p: p.publish(split_job(project, text)))
    photo, message = fake.received
    assert photo["path"].endswith("/sendPhoto") and photo["body"]["caption"] == "📷 Jane Doe"
    assert message["path"].endswith("/sendMessage") and message["body"]["text"] == text
    assert message["body"]["reply_parameters"]["message_id"] == 101  # replies to the photo
    assert published.remote_id == "102"


def test_text_failing_after_the_photo_is_never_resent(project: Project, fake: FakePlatform) -> None:
    settings = settings_for(project, TELEGRAM, fake)
    fake.faults.extend([None, (500, {}, b"oops")])
    with pytest.raises(OutcomeUnknownError, match="the photo was posted"):
        call(settings, lambda p: p.publish(split_job(project, "y" * 1100)))
