"""Facebook Pages (Graph API): a Page's posts, about 63,206 characters each (Meta publishes
no exact figure; the number is what established schedulers enforce), photos under 10 MB
(JPEG or PNG kept small: Meta's own error for large photos says under 4 MB), alt text on
photos (``alt_text_custom``). Thread parts are comments on the post, which carry text only.

A Page access token (from ``GET /me/accounts`` with a long-lived user token) does not expire
while the person who made it keeps their role on the Page.
"""

from __future__ import annotations

from typing import Literal

from . import counting
from .base import MB, AccountConfig, HttpUrl, Platform, Secret, TextLimit

GRAPH_VERSION = "v25.0"


class FacebookAccount(AccountConfig):
    platform: Literal["facebook"]
    page_id: str
    token: Secret  # a Page access token
    api_base: HttpUrl = f"https://graph.facebook.com/{GRAPH_VERSION}"


PLATFORM = Platform(
    "facebook",
    "Facebook Page",
    FacebookAccount,
    "FacebookPublisher",
    (TextLimit("characters", counting.code_points, 63_206),),
    max_image_bytes=10 * MB,
    image_formats=frozenset({"JPEG", "PNG"}),
    reply_images=False,
)
