"""Instagram (content publishing, professional accounts): every post is an image (no text-only
posts), its caption at most 2,200 characters with at most 30 hashtags and 20 @mentions.
Instagram fetches the image itself from a public URL: ``image.url``, or a file in ``posts/``
served under ``media_url``. JPEG only, at most 8 MB, aspect ratio between 4:5 and 1.91:1;
widths outside 320–1440 pixels are rescaled. Thread parts are comments, text only.

Sign-in is Instagram Login (``graph.instagram.com``, the default) or Facebook Login
(``graph.facebook.com``, an Instagram account linked to a Page). Long-lived tokens last 60
days; the publisher refreshes them (Instagram Login) and keeps the newest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator

from . import counting
from .base import MB, AccountConfig, HttpUrl, Platform, Problem, Secret, TextLimit

if TYPE_CHECKING:
    from ..posts.images import ImageInfo

GRAPH_VERSION = "v25.0"
API_BASES = {
    "instagram": f"https://graph.instagram.com/{GRAPH_VERSION}",
    "facebook": f"https://graph.facebook.com/{GRAPH_VERSION}",
}
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
MIN_ASPECT, MAX_ASPECT = 4 / 5, 1.91  # width / height
MIN_WIDTH, MAX_WIDTH = 320, 1440


class InstagramAccount(AccountConfig):
    platform: Literal["instagram"]
    user_id: str
    token: Secret
    login: Literal["instagram", "facebook"] = "instagram"
    api_base: HttpUrl = ""

    @model_validator(mode="before")
    @classmethod
    def _host_for_the_login(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("api_base"):
            return {**data, "api_base": API_BASES[str(data.get("login") or "instagram")]}
        return data

    @property
    def refreshes_token(self) -> bool:
        """Instagram Login tokens are refreshed by the publisher; a Facebook Login token is
        the linked Page's and follows Facebook's rules."""
        return self.login == "instagram"


class Instagram(Platform):
    def text_problems(self, text: str) -> list[Problem]:
        rules = (
            ("hashtags", counting.hashtags, MAX_HASHTAGS, "keep the ones that matter most"),
            ("@mentions", counting.mentions, MAX_MENTIONS, "mention fewer accounts"),
        )
        problems = []
        for what, find, most, hint in rules:
            found = len(find(text))
            if found > most:
                code = f"too-many-{what.lstrip('@')}"
                message = f"{found} {what}, over Instagram's {most}"
                problems.append(Problem(code, message, f"{hint} (Instagram refuses the post)"))
        return problems

    def image_problems(self, info: ImageInfo) -> list[Problem]:
        problems = []
        ratio = info.width / info.height if info.height else 0.0
        if not MIN_ASPECT - 0.005 <= ratio <= MAX_ASPECT + 0.005:
            problems.append(
                Problem(
                    "image-aspect-ratio",
                    f"{info.path.name} is {info.width}×{info.height} (aspect {ratio:.2f}:1); "
                    "Instagram takes 4:5 (0.8:1) to 1.91:1",
                    "crop it, e.g. to 1080×1350 (4:5), 1080×1080 or 1080×566 (1.91:1)",
                )
            )
        if not MIN_WIDTH <= info.width <= MAX_WIDTH:
            problems.append(
                Problem(
                    "image-rescaled",
                    f"{info.path.name} is {info.width:,} pixel{'s' if info.width != 1 else ''} "
                    "wide; Instagram rescales images "
                    f"to {MIN_WIDTH}–{MAX_WIDTH}",
                    "give it 1080 pixels wide to choose how it looks",
                    is_error=False,
                )
            )
        return problems


PLATFORM = Instagram(
    "instagram",
    "Instagram",
    InstagramAccount,
    "InstagramPublisher",
    (TextLimit("characters", counting.code_points, 2200),),
    max_image_bytes=8 * MB,
    image_formats=frozenset({"JPEG"}),
    needs_image=True,
    pulls_images=True,
    reply_images=False,
)
