"""The checks ``validate`` runs on loaded posts, beyond what the models enforce.

Each rule looks at one post for one target account (limits differ per platform) and returns
findings that say where, which post, which account, what is wrong and what to do. Errors block
only that post; warnings never block.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings, unknown_account_finding
from ..errors import Finding, ImageError, error, warning
from ..platforms import PLATFORMS, Platform
from ..platforms.base import Problem
from .images import ImageInfo, inspect_image, resolve_image_path
from .loader import Catalog, SourcedPost
from .models import Image, is_global_ip
from .render import Rendering, effective_content, render_post, target_accounts, thread_led

if TYPE_CHECKING:
    from .cache import PostCache


def image_locations(
    sp: SourcedPost, rendering: Rendering
) -> Iterator[tuple[tuple[str | int, ...], Image]]:
    """(location in the post, image) for every image this rendering publishes."""
    content = effective_content(sp.post, rendering.account, rendering.platform.name)
    thread = content.thread or []
    thread_at = _field_location(sp, rendering, "thread")
    image_at = _field_location(sp, rendering, "image")
    # A post led by its thread publishes the thread's first part as the post (render).
    offset = 0 if thread_led(content) else 1
    for part in rendering.parts:
        if part.image is None:
            continue
        i = part.index - offset
        if 0 <= i < len(thread) and thread[i].image is not None:
            yield (*thread_at, i, "image"), part.image
        else:
            yield image_at, part.image


def _format_choice(formats: frozenset[str]) -> str:
    """What to convert an image to for a platform that takes ``formats``: JPEG or PNG, as
    far as it takes them (Instagram: JPEG only)."""
    usual: list[str] = [f for f in ("JPEG", "PNG") if f in formats] or sorted(formats)
    return " or ".join(usual)


def _names_a_local_address(url: str) -> bool:
    """Whether ``url``'s host is, as written, a loopback, private or link-local address (the
    publisher's fence checks what a name resolves to; this needs no network)."""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return is_global_ip(host) is False


def _check_image_file(
    sp: SourcedPost,
    loc: tuple[str | int, ...],
    image: Image,
    settings: Settings,
    cache: dict[str, ImageInfo | str],
) -> tuple[ImageInfo | None, list[Finding]]:
    assert image.file is not None
    key = image.file
    if key not in cache:
        try:
            path = resolve_image_path(settings.posts_dir, image.file)
            cache[key] = inspect_image(path)
        except ImageError as exc:
            cache[key] = str(exc)
    got = cache[key]
    if isinstance(got, str):
        return None, [error("image-invalid", got, **sp.where(*loc, "file"))]
    return got, []


def check_post(
    sp: SourcedPost, settings: Settings, now: dt.datetime | None = None
) -> list[Finding]:
    """Every finding for one post, across all of its target accounts."""
    return check_post_as_written(sp, settings) + dated_findings(sp, settings, now)


def check_post_as_written(
    sp: SourcedPost, settings: Settings, image_cache: dict[str, ImageInfo | str] | None = None
) -> list[Finding]:
    """The findings that depend only on the post, the configuration and its images, not on
    the time: what a reload may keep while none of them changed (``posts.cache``).
    ``image_cache``: the images checked, by the path written in the post."""
    findings: list[Finding] = []
    post = sp.post
    accounts_cfg = settings.config.accounts
    targets = target_accounts(post, settings)
    if not targets:
        findings.append(
            error(
                "no-accounts",
                "the post goes to no account",
                hint="add accounts: [...] to the post, or defaults.accounts to scheduler.yaml",
                **sp.where("id"),
            )
        )
    known_targets = []
    for i, name in enumerate(targets):
        if name in accounts_cfg:
            known_targets.append(name)
        else:
            findings.append(unknown_account_finding(name, settings, **sp.where("accounts", i)))
    # An override for a platform no account is on is fine: one posts/ folder often serves
    # several configurations (a CI check with the outbox, the daemon with real accounts).
    for key in post.overrides or {}:
        if key not in accounts_cfg and key not in PLATFORMS:
            findings.append(
                error(
                    "unknown-override",
                    f"overrides.{key}: no account or platform is called {key!r}",
                    hint=f"use an account ({', '.join(accounts_cfg)}) or a platform "
                    f"({', '.join(sorted(PLATFORMS))})",
                    **sp.where("overrides", key, key=True),
                )
            )
    if post.at is not None and not post.is_draft:
        findings.extend(_blackout_findings(sp, known_targets, settings))
    if image_cache is None:
        image_cache = {}
    for account in known_targets:
        findings.extend(
            _check_rendering(sp, render_post(post, account, settings), settings, image_cache)
        )
    return _dedupe(findings)


def dated_findings(sp: SourcedPost, settings: Settings, now: dt.datetime | None) -> list[Finding]:
    """What the time makes of the post: expired, or too far in the past to be sent."""
    post = sp.post
    if now is None or post.at is None or post.is_draft:
        return []
    if post.expires is not None and post.expires <= now:
        return [
            warning(
                "expired",
                "the post has expired and will not be published",
                **sp.where("expires"),
            )
        ]
    if post.at < now - settings.config.publishing.late_grace:
        return [
            warning(
                "in-the-past",
                f"at: is in the past (more than {settings.config.publishing.late_grace} ago): "
                "the daemon will skip it as late unless it was already published",
                **sp.where("at"),
            )
        ]
    return []


def _blackout_findings(sp: SourcedPost, accounts: list[str], settings: Settings) -> list[Finding]:
    cfg = settings.config
    assert sp.post.at is not None
    findings = []
    for account in accounts:
        hit = cfg.blackout_at(sp.post.at, account)
        if hit is None:
            continue
        window, end = hit
        until = end.astimezone(cfg.zone).strftime("%Y-%m-%d %H:%M")
        if window.action == "refuse":
            findings.append(
                error(
                    "in-blackout",
                    f"at: falls in the blackout {window.name!r} for {account} ({window.start} "
                    f"– {window.end}): it will not be sent",
                    hint="move the post out of the window, or take the account out of it",
                    **sp.where("at", account=account),
                )
            )
        else:
            findings.append(
                warning(
                    "blackout-hold",
                    f"at: falls in the blackout {window.name!r}: it goes to {account} at "
                    f"{until}, when the window ends",
                    **sp.where("at", account=account),
                )
            )
    return findings


def _field_location(sp: SourcedPost, rendering: Rendering, field: str) -> tuple[str, ...]:
    """Where ``field`` of the rendered content was written: an override's, else the post's."""
    for key in (rendering.account, rendering.platform.name):
        override = (sp.post.overrides or {}).get(key)
        if override is not None and field in override.model_fields_set:
            return ("overrides", key, field)
    return (field,)


def text_location(sp: SourcedPost, rendering: Rendering, index: int) -> tuple[str | int, ...]:
    """Where the words of part ``index`` of ``rendering`` were written in the post file."""
    for key in (rendering.account, rendering.platform.name):
        if key in (sp.post.overrides or {}):
            return ("overrides", key)
    if thread_led(sp.post):
        return ("thread", index)
    if index == 0:
        return ("text",) if sp.post.text else ("id",)
    return ("thread", index - 1)


def _check_rendering(
    sp: SourcedPost,
    rendering: Rendering,
    settings: Settings,
    image_cache: dict[str, ImageInfo | str],
) -> list[Finding]:
    findings: list[Finding] = []
    platform: Platform = rendering.platform
    account = rendering.account
    account_cfg = settings.config.accounts[account]
    max_image_bytes = platform.image_limit(account_cfg)
    for part in rendering.parts:
        if not part.limited:
            continue
        for measure in part.measures:
            if measure.over:
                text_loc = text_location(sp, rendering, part.index)
                what = "the post" if part.index == 0 else f"thread part {part.index + 1}"
                findings.append(
                    error(
                        "text-too-long",
                        f"{what} is {measure} on {platform.label} "
                        f"(text, quote, link and photo credit together)",
                        hint="shorten it, move text into thread:, "
                        f"or give overrides.{account}.text",
                        **sp.where(*text_loc, account=account),
                    )
                )
    findings.extend(_platform_rules(sp, rendering, settings))
    warning_text = rendering.content.content_warning
    if warning_text and not platform.content_warnings:
        findings.append(
            warning(
                "content-warning-not-shown",
                f"{platform.label} has no content warnings: {warning_text!r} will not be shown "
                "there",
                hint=f"say it in the text with overrides.{account}.text, or leave {account} out",
                **sp.where(*_field_location(sp, rendering, "content_warning"), account=account),
            )
        )
    images = list(image_locations(sp, rendering))
    for loc, image in images:
        where = sp.where(*loc, account=account)
        if (
            image.url is not None
            and not settings.config.link_cards.allow_private_addresses
            and _names_a_local_address(image.url)
        ):
            findings.append(
                error(
                    "image-url-private",
                    f"image.url {image.url} is a private or local address: it will not be "
                    "fetched, and the post cannot go out with it",
                    hint="give the image's public address, or put the file in posts/ "
                    "(link_cards.allow_private_addresses lets the daemon fetch such addresses)",
                    **sp.where(*loc, "url", account=account),
                )
            )
        if platform.max_alt is not None and len(image.alt) > platform.max_alt:
            findings.append(
                error(
                    "alt-too-long",
                    f"alt text is {len(image.alt)} characters, "
                    f"over {platform.label}'s {platform.max_alt}",
                    hint="describe the image more briefly",
                    **sp.where(*loc, "alt", account=account),
                )
            )
        if image.file is not None and platform.pulls_images and settings.config.media_url is None:
            findings.append(
                error(
                    "image-not-hosted",
                    f"{platform.label} fetches images from a public address, and "
                    f"{image.file} has none",
                    hint="set media_url: in scheduler.yaml to where posts/ is served (e.g. "
                    "https://campaign.example/posts), or give image.url",
                    **sp.where(*loc, "file", account=account),
                )
            )
        if image.file is not None:
            if not platform.image_files:
                findings.append(
                    error(
                        "image-needs-url",
                        f"{platform.label} cannot upload image files, "
                        "only show an image by its public URL",
                        hint="give image.url instead of image.file, "
                        f"or an override for {account} without the image",
                        **where,
                    )
                )
                continue
            info, problems = _check_image_file(sp, loc, image, settings, image_cache)
            findings.extend(problems)
            if info is None:
                continue
            where_file = sp.where(*loc, "file", account=account)
            for problem in platform.image_problems(info):
                findings.append(_finding(problem, where_file))
            if platform.fits_images and (
                (platform.image_formats is not None and info.format not in platform.image_formats)
                or (max_image_bytes is not None and info.size > max_image_bytes)
            ):
                findings.append(
                    warning(
                        "image-refitted",
                        f"{info.path.name} ({info.format}, {info.size:,} bytes) will be "
                        f"re-encoded, and downscaled if needed, to fit {platform.label}'s "
                        f"{max_image_bytes:,} bytes",
                        hint="give a smaller JPEG yourself to choose how it looks",
                        **where_file,
                    )
                )
                continue
            if platform.image_formats is not None and info.format not in platform.image_formats:
                findings.append(
                    error(
                        "image-format",
                        f"{info.path.name} is {info.format}, which {platform.label} does not take "
                        f"({', '.join(sorted(platform.image_formats))})",
                        hint=f"convert it to {_format_choice(platform.image_formats)}",
                        **where_file,
                    )
                )
            if max_image_bytes is not None and info.size > max_image_bytes:
                findings.append(
                    error(
                        "image-too-large",
                        f"{info.path.name} is {info.size:,} bytes, over {platform.label}'s "
                        f"{max_image_bytes:,}",
                        hint="resize or recompress it",
                        **where_file,
                    )
                )
    return findings


def _finding(problem: Problem, where: dict[str, Any]) -> Finding:
    make = error if problem.is_error else warning
    return make(problem.code, problem.message, hint=problem.hint, **where)


def _platform_rules(sp: SourcedPost, rendering: Rendering, settings: Settings) -> list[Finding]:
    """What this platform refuses beyond lengths and image files: a post without an image
    where every post is one, too many hashtags or links, images a comment cannot carry."""
    platform, account = rendering.platform, rendering.account
    findings = []
    if platform.needs_image and rendering.parts[0].image is None:
        findings.append(
            error(
                "needs-image",
                f"{platform.label} has no text-only posts: this post has no image",
                hint=f"add an image: (file or url, alt, credit), give overrides.{account}.image, "
                f"or leave {account} out of the post's accounts",
                **sp.where(*text_location(sp, rendering, 0), account=account),
            )
        )
    for part in rendering.parts:
        where = sp.where(*text_location(sp, rendering, part.index), account=account)
        for problem in platform.text_problems(part.text):
            what = "the post" if part.index == 0 else f"thread part {part.index + 1}"
            findings.append(
                _finding(
                    dataclasses.replace(problem, message=f"{what} has {problem.message}"), where
                )
            )
    if not platform.reply_images:
        content = effective_content(sp.post, account, platform.name)
        offset = 1 if thread_led(content) else 0
        thread_at = _field_location(sp, rendering, "thread")
        for i, reply in enumerate(rendering.content.thread or ()):
            if reply.image is not None:
                findings.append(
                    warning(
                        "image-not-in-comment",
                        f"thread part {i + 2} goes to {platform.label} as a comment, which "
                        "carries text only: its image (and credit line) is left out there",
                        hint="put the image on the post itself, or accept it",
                        **sp.where(*thread_at, i + offset, "image", account=account),
                    )
                )
    return findings


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen = set()
    out = []
    for f in findings:
        key = (f.code, f.file, f.line, f.column, f.message, f.account)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def check_catalog(
    catalog: Catalog, settings: Settings, now: dt.datetime | None = None
) -> list[Finding]:
    """Run every rule over every loaded post; marks posts with errors as blocked."""
    found: list[Finding] = []
    for sp in catalog.posts:
        post_findings = check_post(sp, settings, now)
        if any(f.is_error for f in post_findings):
            catalog.blocked_ids.add(sp.id)
        found.extend(post_findings)
    catalog.findings.extend(found)
    return found


def validate(
    settings: Settings,
    paths: list[Path] | None = None,
    now: dt.datetime | None = None,
    *,
    cache: PostCache | None = None,
) -> Catalog:
    """Load and check posts: the whole of ``postscheduler validate``. The whole posts folder
    is read through ``cache`` (the daemon keeps one from reload to reload); without one,
    through a cache that keeps what it read in the state folder for the next run."""
    if paths is not None and len(paths) == 1 and _is_posts_dir(paths[0], settings):
        paths = None  # `validate posts/`, as people type it: the whole folder, kept so
    if paths is None:
        from .cache import PostCache

        return (cache or PostCache(settings, keep=settings.state_dir)).read(now)
    from .loader import load_posts

    catalog = load_posts(settings, paths)
    check_catalog(catalog, settings, now)
    return catalog


def _is_posts_dir(path: Path, settings: Settings) -> bool:
    try:
        return path.is_dir() and path.resolve() == settings.posts_dir
    except OSError:
        return False
