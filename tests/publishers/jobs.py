"""A PublishJob for publisher tests, with only what a test cares about spelled out."""

from __future__ import annotations

import datetime as dt

from postscheduler.ledger import DeliveryKey
from postscheduler.posts.models import Image
from postscheduler.publishers import Published, PublishJob

DUE = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)


def make_job(
    account: str,
    text: str,
    *,
    identity: str = "postscheduler-0123456789abcdef",
    image_path: str | None = None,
    image: Image | None = None,
    language: str | None = None,
    part: int = 0,
    reply_to: Published | None = None,
) -> PublishJob:
    if image_path is not None and image is None:
        image = Image(file="images/photo.jpg", alt="Marchers with a banner.", credit="Jane Doe")
    return PublishJob(
        key=DeliveryKey("p", account, part),
        identity=identity,
        text=text,
        image=image,
        image_path=image_path,
        link=None,
        language=language,
        content_warning=None,
        reply_to=reply_to,
        root=reply_to,
        parts=part + 1,
        due_at=DUE,
        attempt=1,
    )
