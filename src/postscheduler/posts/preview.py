"""``preview``: a post exactly as each account will publish it, as data.

The text CLI and the HTML page (``preview_html``) both format a ``Preview``; neither composes
or counts anything itself, so what they show is what render gives the publishers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from ..config import Settings, unknown_account_finding
from ..errors import Finding, ImageError, PostschedulerError
from ..platforms import Message
from .images import ImageInfo, inspect_image, resolve_image_path
from .loader import Catalog, SourcedPost
from .models import Image, Post
from .render import RenderedPart, Rendering, render_post, target_accounts
from .rules import validate


@dataclasses.dataclass(frozen=True, slots=True)
class ImageView:
    """An image as published, with what its file is (or why it cannot be used)."""

    image: Image
    info: ImageInfo | None = None  # None for an image by URL, or a file with a problem
    problem: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PartView:
    part: RenderedPart
    image: ImageView | None

    @property
    def split(self) -> tuple[Message, ...]:
        """The messages this part is really sent as, when there is more than one."""
        return self.part.messages if len(self.part.messages) > 1 else ()


@dataclasses.dataclass(frozen=True, slots=True)
class AccountPreview:
    rendering: Rendering
    parts: tuple[PartView, ...]
    card: str | None  # what the link card will show, where the client builds it
    findings: tuple[Finding, ...]  # the post's findings for this account (or all accounts)


@dataclasses.dataclass(frozen=True, slots=True)
class Preview:
    post: Post
    at: dt.datetime | None  # in the configured zone; None for a draft without a time
    accounts: tuple[AccountPreview, ...]
    findings: tuple[Finding, ...]

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)


def _image_view(image: Image, settings: Settings, cache: dict[str, ImageView]) -> ImageView:
    if image.file is None:
        return ImageView(image)
    if image.file not in cache:
        try:
            info = inspect_image(resolve_image_path(settings.posts_dir, image.file))
            cache[image.file] = ImageView(image, info)
        except ImageError as exc:
            cache[image.file] = ImageView(image, problem=str(exc))
    return dataclasses.replace(cache[image.file], image=image)


def _card(rendering: Rendering, settings: Settings) -> str | None:
    if not (rendering.link and rendering.platform.builds_link_cards):
        return None
    if rendering.parts[0].image is not None:
        return None  # the image is the post's picture: no card
    if settings.config.link_cards.enabled:
        return "the page's title, description and image, fetched when published"
    return "none (link_cards.enabled is false)"


def preview_post(
    settings: Settings, post_id: str, accounts: list[str] | None = None, *, now: dt.datetime
) -> Preview:
    """``post_id`` rendered for ``accounts`` (default: the accounts it goes to)."""
    catalog = validate(settings, now=now)
    if post_id not in {sp.id for sp in catalog.posts} and post_id in catalog.blocked_ids:
        problems = [f.as_text() for f in catalog.findings if f.post_id == post_id and f.is_error]
        raise PostschedulerError(
            f"post {post_id!r} cannot be previewed until its errors are fixed:\n  "
            + "\n  ".join(problems)
        )
    sp = catalog.get(post_id)
    targets = accounts or target_accounts(sp.post, settings)
    for name in targets:
        if name not in settings.config.accounts:
            raise PostschedulerError(unknown_account_finding(name, settings).as_text())
    return preview_sourced(sp, catalog, settings, targets)


def preview_sourced(
    sp: SourcedPost,
    catalog: Catalog,
    settings: Settings,
    accounts: list[str],
    images: dict[str, ImageView] | None = None,
) -> Preview:
    """A valid post of ``catalog`` rendered for ``accounts`` (configured ones); ``images``
    shares image checks across posts (the calendar previews them all)."""
    findings = tuple(f for f in catalog.findings if f.post_id == sp.id)
    images = {} if images is None else images
    views = []
    for name in accounts:
        rendering = render_post(sp.post, name, settings)
        parts = tuple(
            PartView(p, _image_view(p.image, settings, images) if p.image else None)
            for p in rendering.parts
        )
        mine = tuple(f for f in findings if f.account in (None, name))
        views.append(AccountPreview(rendering, parts, _card(rendering, settings), mine))
    at = sp.post.at.astimezone(settings.config.zone) if sp.post.at else None
    return Preview(sp.post, at, tuple(views), findings)
