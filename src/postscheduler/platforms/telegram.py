"""Telegram (a bot posting to a channel): 4,096 UTF-16 code units per message, as the Bot
API counts; a photo's caption holds at most 1,024.

A part with an image whose text is longer than a caption is sent as two messages: the photo
with its credit line as caption, then the whole text as a reply to it. ``messages`` says so,
so ``preview`` shows both and the publisher sends exactly those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from . import counting
from .base import MB, AccountConfig, HttpUrl, Message, Platform, Secret, TextLimit

if TYPE_CHECKING:
    from ..posts.models import Image

CAPTION_LIMIT = 1024  # UTF-16 code units


class TelegramAccount(AccountConfig):
    platform: Literal["telegram"]
    bot_token: Secret
    chat_id: str | int
    api_base: HttpUrl = "https://api.telegram.org"
    link_preview: bool = True


class Telegram(Platform):
    def messages(self, text: str, image: Image | None, credit: str | None) -> tuple[Message, ...]:
        if image is None or counting.utf16_units(text) <= CAPTION_LIMIT:
            return (Message(text, image),)
        return (Message(credit or "", image), Message(text, None))


PLATFORM = Telegram(
    "telegram",
    "Telegram",
    TelegramAccount,
    "TelegramPublisher",
    (TextLimit("characters (UTF-16)", counting.utf16_units, 4096),),
    max_image_bytes=10 * MB,
    image_formats=frozenset({"JPEG", "PNG", "GIF", "WEBP"}),
)
