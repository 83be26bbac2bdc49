"""validate for the platforms of issue 12: Instagram's image-only posts and caption rules,
images Instagram and Threads must fetch from a public address, Threads' links, LinkedIn's
escaped length, and comments that carry no image."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from postscheduler.errors import Finding
from postscheduler.posts.rules import validate

from .conftest import Project

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)

CONFIG = """\
timezone: Europe/London
posts_dir: posts
{media_url}
accounts:
  outbox: {{platform: outbox, path: outbox}}
  ig: {{platform: instagram, user_id: "17841400000000000", token: "${{IG_TOKEN}}"}}
  threads: {{platform: threads, user_id: "1234", token: "${{THREADS_TOKEN}}"}}
  fb: {{platform: facebook, page_id: "1000", token: "${{FB_TOKEN}}"}}
  li:
    platform: linkedin
    author: "urn:li:organization:5"
    token: "${{LI_TOKEN}}"
    version: 202611
defaults:
  accounts: [outbox]
"""


@pytest.fixture
def meta(make_project: Callable[[str], Project]) -> Callable[..., Project]:
    def make(media_url: str | None = "https://campaign.example/posts") -> Project:
        line = f"media_url: {media_url}" if media_url else ""
        return make_project(CONFIG.format(media_url=line))

    return make


def findings(project: Project) -> list[Finding]:
    return validate(project.settings(), now=NOW).findings


def test_an_instagram_post_without_an_image_is_refused_where_it_is_written(
    meta: Callable[..., Project],
) -> None:
    project = meta()
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\naccounts: [outbox, ig]\ntext: Hi.\n")
    (f,) = findings(project)
    assert (f.code, f.is_error, f.account, f.post_id) == ("needs-image", True, "ig", "p")
    assert (f.file.name, f.line, f.column) == ("p.yaml", 4, 7)
    assert "no text-only posts" in f.message and "overrides.ig.image" in (f.hint or "")


IMAGE_POST = """\
id: p
at: 2027-01-14 09:00
accounts: [{accounts}]
text: {text}
image: {{file: images/photo.jpg, alt: Marchers., credit: Jane Doe}}
"""


def test_a_file_image_needs_media_url_for_the_platforms_that_fetch_it(
    meta: Callable[..., Project],
) -> None:
    project = meta(media_url=None)
    project.image(size=(1080, 1080))
    project.write("p.yaml", IMAGE_POST.format(accounts="ig, threads, fb", text="A march."))
    got = sorted((f.code, f.account, f.line, f.column) for f in findings(project))
    # Facebook uploads the bytes itself; Instagram and Threads need a public address.
    assert got == [("image-not-hosted", "ig", 5, 15), ("image-not-hosted", "threads", 5, 15)]
    assert "media_url" in (findings(project)[0].hint or "")


def test_a_clean_instagram_post(meta: Callable[..., Project]) -> None:
    project = meta()
    project.image(size=(1080, 1350))
    project.write("p.yaml", IMAGE_POST.format(accounts="ig, threads, fb, li", text="A march."))
    assert findings(project) == []


def test_instagram_caption_length_hashtags_and_mentions(meta: Callable[..., Project]) -> None:
    project = meta()
    project.image(size=(1080, 1080))
    tags = " ".join(f"#tag{i}" for i in range(31))
    names = " ".join(f"@user.{i}" for i in range(21))
    project.write("tags.yaml", IMAGE_POST.format(accounts="ig", text=f"'{tags} {names}'"))
    long_text = "a" * 2200
    project.write(
        "long.yaml", IMAGE_POST.format(accounts="ig", text=long_text).replace("p", "q", 1)
    )
    got = {(f.post_id, f.code): f for f in findings(project)}
    assert set(got) == {
        ("p", "too-many-hashtags"),
        ("p", "too-many-mentions"),
        ("q", "text-too-long"),
    }
    assert "31 hashtags, over Instagram's 30" in got["p", "too-many-hashtags"].message
    assert "21 @mentions" in got["p", "too-many-mentions"].message
    # The credit line counts: 2,200 of text plus it is over.
    assert "/2200 characters on Instagram" in got["q", "text-too-long"].message
    assert got["q", "text-too-long"].line == 4


def test_a_hashtag_in_a_link_is_not_counted(meta: Callable[..., Project]) -> None:
    project = meta()
    project.image(size=(1080, 1080))
    tags = " ".join(f"#t{i}" for i in range(30))
    text = f"'{tags} https://campaign.example/page#section'"
    project.write("p.yaml", IMAGE_POST.format(accounts="ig", text=text))
    assert findings(project) == []


@pytest.mark.parametrize(
    ("size", "codes"),
    [
        ((1080, 1350), []),  # 4:5, the tallest
        ((1080, 566), []),  # 1.91:1, the widest
        ((1080, 1440), [("image-aspect-ratio", True)]),  # 3:4 is too tall
        ((2000, 1000), [("image-aspect-ratio", True), ("image-rescaled", False)]),
        ((200, 200), [("image-rescaled", False)]),
    ],
)
def test_instagram_image_rules_from_the_image_bytes(
    meta: Callable[..., Project], size: tuple[int, int], codes: list[tuple[str, bool]]
) -> None:
    project = meta()
    project.image(size=size)
    project.write("p.yaml", IMAGE_POST.format(accounts="ig", text="A march."))
    got = findings(project)
    assert sorted((f.code, f.is_error) for f in got) == codes
    assert all((f.line, f.column) == (5, 15) for f in got)


def test_instagram_takes_jpeg_only_threads_png_too(meta: Callable[..., Project]) -> None:
    project = meta()
    project.image("images/photo.jpg", size=(1080, 1080), fmt="PNG")
    project.write("p.yaml", IMAGE_POST.format(accounts="ig, threads", text="A march."))
    (f,) = findings(project)
    assert (f.code, f.account) == ("image-format", "ig")
    assert f.hint == "convert it to JPEG"  # not PNG, which Instagram refuses too


def test_threads_counts_emoji_by_their_bytes_and_at_most_five_links(
    meta: Callable[..., Project],
) -> None:
    project = meta()
    # 70 raised fists with a skin tone: 70 characters elsewhere, 490 on Threads (7 bytes each)
    project.write(
        "fists.yaml", f"id: f\nat: 2027-01-14 09:00\naccounts: [threads]\ntext: {'✊🏽' * 72}\n"
    )
    links = " ".join(f"https://campaign.org/{i}" for i in range(6))
    project.write(
        "links.yaml", f"id: l\nat: 2027-01-14 09:00\naccounts: [threads]\ntext: {links}\n"
    )
    got = {(f.post_id, f.code): f for f in findings(project)}
    assert set(got) == {("f", "text-too-long"), ("l", "too-many-links")}
    assert "504/500" in got["f", "text-too-long"].message
    assert "6 different links, over Threads' 5" in got["l", "too-many-links"].message


def test_linkedin_counts_the_escaped_commentary(meta: Callable[..., Project]) -> None:
    project = meta()
    # 1,600 parentheses are 3,200 characters once escaped: over, though 1,600 as written.
    project.write("p.yaml", f"id: p\nat: 2027-01-14 09:00\naccounts: [li]\ntext: '{'()' * 800}'\n")
    (f,) = findings(project)
    assert f.code == "text-too-long" and "3200/3000 characters as sent" in f.message


def test_an_image_on_a_thread_part_is_left_out_of_a_comment_with_a_warning(
    meta: Callable[..., Project],
) -> None:
    project = meta()
    project.image(size=(1080, 1080))
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\naccounts: [fb, threads]\ntext: One.\nthread:\n"
        "  - text: Two.\n    image: {file: images/photo.jpg, alt: A., credit: B}\n",
    )
    (f,) = findings(project)
    assert (f.code, f.account, f.is_error, f.line) == ("image-not-in-comment", "fb", False, 7)
    from postscheduler.posts.loader import load_posts
    from postscheduler.posts.render import render_post

    settings = project.settings()
    (sp,) = load_posts(settings).posts
    assert render_post(sp.post, "fb", settings).parts[1].text == "Two."  # no credit, no image
    assert render_post(sp.post, "threads", settings).parts[1].text == "Two.\n\n📷 B"


def test_validate_online_fetches_each_hosted_image_and_compares_its_bytes(
    meta: Callable[..., Project],
) -> None:
    """A post never fails at its time because the image was not pushed yet: validate
    --online fetches it from media_url as Instagram will, and compares it with the file."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from postscheduler.delivery.checks import validate_posts

    project = meta()
    served = project.root / "site"
    served.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/posts"
        project.config_path.write_text(
            project.config_path.read_text().replace("https://campaign.example/posts", base)
            + "link_cards: {allow_private_addresses: true}\n"
        )
        photo = project.image(size=(1080, 1080))
        project.write("p.yaml", IMAGE_POST.format(accounts="ig, fb", text="A march."))

        def online() -> list[tuple[str, str | None, str]]:
            found = validate_posts(project.settings(), now=NOW, online=True).catalog.findings
            return [(f.code, f.account, f.message) for f in found]

        ((code, account, message),) = online()  # not pushed yet
        assert (code, account) == ("image-not-served", "ig") and "cannot be fetched" in message
        (served / "posts" / "images").mkdir(parents=True)
        (served / "posts" / "images" / "photo.jpg").write_bytes(photo.read_bytes())
        assert online() == []
        project.image(size=(1080, 1350))  # edited, not pushed again
        ((code, account, message),) = online()
        assert code == "image-not-served" and "serves a different file" in message
    finally:
        server.shutdown()
        server.server_close()
