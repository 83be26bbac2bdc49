"""What each account will publish, exactly: the one place published text is composed.

``preview`` shows it, ``validate`` counts it, and the publishers send it, so what an organiser
previews is byte-for-byte what goes out. The photo credit is part of the text (through
``credit_format``) on every part that carries an image, and counts toward the limits.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from ..config import Settings
from ..platforms import Measure, Message, Platform, get_platform
from ..platforms.base import LinkSpan
from .models import Content, Image, Post, Quote

BLOCK_SEPARATOR = "\n\n"


@dataclasses.dataclass(frozen=True)
class RenderedPart:
    """One status / skeet / tweet / message. Part 0 is the post, the rest are its replies."""

    index: int
    text: str
    image: Image | None
    limited: bool  # whether the account has any text limit to check
    _measure: Callable[[str], list[Measure]] = dataclasses.field(repr=False, compare=False)
    # Where the text shows links, for platforms that need them marked (Bluesky's facets):
    # UTF-8 byte ranges of ``text`` and the URI each stands for. None: not worked out.
    links: tuple[LinkSpan, ...] | None = None
    # What is really sent for this part, in order: one message on most platforms; on
    # Telegram a photo whose text is too long for a caption goes as two (photo, then text).
    messages: tuple[Message, ...] = ()

    @functools.cached_property
    def measures(self) -> tuple[Measure, ...]:
        """The text counted against each limit (computed on first use: counting costs)."""
        return tuple(self._measure(self.text))

    @property
    def over_limit(self) -> bool:
        return self.limited and any(m.over for m in self.measures)


@dataclasses.dataclass(frozen=True, slots=True)
class Rendering:
    """A post as one account will publish it."""

    post_id: str
    account: str
    platform: Platform
    content: Content  # the post's content after this account's overrides
    parts: tuple[RenderedPart, ...]

    @property
    def link(self) -> str | None:
        return self.content.link


def effective_content(post: Post, account: str, platform: str) -> Content:
    """The post's content with overrides applied: the platform's, then the account's."""
    base: Content = post  # a Post is a Content; models are frozen, so sharing is safe
    for key in (platform, account):
        override = (post.overrides or {}).get(key)
        if override is not None:
            # The override's own validated values (models, not dumps of them: an image or
            # a quote stays an Image or a Quote), only those it sets.
            fields = {name: getattr(override, name) for name in override.model_fields_set}
            base = base.model_copy(update={k: v for k, v in fields.items() if v is not None})
    return base


def thread_led(content: Content) -> bool:
    """A post with no words of its own (no text, no quote) but a thread: its first part is
    the post, carrying its link and image, not a reply under a post nobody wrote."""
    return bool(content.thread) and not content.text and content.quote is None


def _lead_with_thread(content: Content) -> Content:
    assert content.thread
    first, *rest = content.thread
    return content.model_copy(
        update={"text": first.text, "image": first.image or content.image, "thread": rest or None}
    )


def format_quote(quote: Quote) -> str:
    attribution = quote.by if not quote.role else f"{quote.by}, {quote.role}"
    return f"“{quote.text}”\n— {attribution}"


def format_credit(image: Image, credit_format: str) -> str:
    return credit_format.format(credit=image.credit)


def compose_main_text(content: Content, credit_format: str) -> str:
    blocks = []
    if content.text:
        blocks.append(content.text)
    if content.quote:
        blocks.append(format_quote(content.quote))
    if content.link and not (content.text and content.link in content.text):
        blocks.append(content.link)
    if content.image:
        blocks.append(format_credit(content.image, credit_format))
    return BLOCK_SEPARATOR.join(blocks)


def compose_reply_text(text: str, image: Image | None, credit_format: str) -> str:
    if image is None:
        return text
    return text + BLOCK_SEPARATOR + format_credit(image, credit_format)


def render_post(post: Post, account: str, settings: Settings) -> Rendering:
    """Render ``post`` for the configured ``account``."""
    account_cfg = settings.config.accounts[account]
    platform = get_platform(account_cfg.platform)
    content = effective_content(post, account, platform.name)
    if thread_led(content):
        content = _lead_with_thread(content)
    credit_format = settings.config.credit_format
    limited = bool(platform.text_limits) or account_cfg.max_characters is not None

    def measure(text: str) -> list[Measure]:
        return platform.measure(text, account_cfg)

    def part(index: int, text: str, image: Image | None) -> RenderedPart:
        text, links = platform.display(text, account_cfg)
        credit = format_credit(image, credit_format) if image is not None else None
        messages = platform.messages(text, image, credit)
        return RenderedPart(index, text, image, limited, measure, links, messages)

    parts = [part(0, compose_main_text(content, credit_format), content.image)]
    for i, reply in enumerate(content.thread or (), start=1):
        # Where replies are comments of text alone, a part's image is not sent, nor its credit.
        image = reply.image if platform.reply_images else None
        parts.append(part(i, compose_reply_text(reply.text, image, credit_format), image))
    return Rendering(post.id, account, platform, content, tuple(parts))


def target_accounts(post: Post, settings: Settings) -> list[str]:
    """The accounts a post goes to: its own list, else the configured defaults."""
    if post.accounts is not None:
        return list(post.accounts)
    return list(settings.config.defaults.accounts)
