from __future__ import annotations

from postscheduler.posts.loader import load_posts
from postscheduler.posts.render import render_post

from .conftest import Project

ARTICLE = """\
link: https://example.org/article
posts:
  - id: article
    at: 2027-01-14 09:00
    accounts: [outbox, bluesky]
    text: The article.
    image: {file: images/photo.jpg, alt: A march., credit: Kawsachun News}
    overrides:
      bluesky: {text: Short for Bluesky.}
  - id: quote
    at: 2027-01-15 09:00
    quote: {text: Solidarity now., by: Ana Pérez, role: organiser}
    thread:
      - Part two.
      - text: Part three.
        image: {file: images/photo.jpg, alt: Again., credit: Jane Doe}
"""


def _render(project: Project, post_id: str, account: str = "outbox"):  # type: ignore[no-untyped-def]
    project.image()
    project.write("p.yaml", ARTICLE)
    settings = project.settings()
    catalog = load_posts(settings)
    return render_post(catalog.get(post_id).post, account, settings)


def test_text_link_and_credit(project: Project) -> None:
    rendering = _render(project, "article")
    (part,) = rendering.parts
    assert part.text == "The article.\n\nhttps://example.org/article\n\n📷 Kawsachun News"
    assert part.image is not None and part.image.alt == "A march."


def test_override_keeps_the_credit(project: Project) -> None:
    rendering = _render(project, "article", "bluesky")
    part = rendering.parts[0]
    # Bluesky shows the link as its app does; the facet will hold the whole URL.
    assert part.text == "Short for Bluesky.\n\nexample.org/article\n\n📷 Kawsachun News"
    assert part.links == ((20, 39, "https://example.org/article"),)
    assert [str(m) for m in part.measures] == ["57/300 graphemes", "60/3000 UTF-8 bytes"]


def test_quote_with_attribution_and_thread(project: Project) -> None:
    rendering = _render(project, "quote")
    texts = [p.text for p in rendering.parts]
    assert texts[0] == "“Solidarity now.”\n— Ana Pérez, organiser\n\nhttps://example.org/article"
    assert texts[1] == "Part two."
    assert texts[2] == "Part three.\n\n📷 Jane Doe"  # every part with an image carries its credit
    assert [p.index for p in rendering.parts] == [0, 1, 2]


def test_link_already_in_text_is_not_repeated(project: Project) -> None:
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\ntext: Read https://example.org/a now\nlink: https://example.org/a\n",
    )
    settings = project.settings()
    rendering = render_post(load_posts(settings).get("p").post, "outbox", settings)
    assert rendering.parts[0].text == "Read https://example.org/a now"


def test_credit_format_from_config(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        'credit_format: "Photo: {credit}"\naccounts: {o: {platform: outbox}}\n'
        "defaults: {accounts: [o]}\n"
    )
    project.image()
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\nimage: {file: images/photo.jpg, alt: a, credit: Jo}\n",
    )
    settings = project.settings()
    rendering = render_post(load_posts(settings).get("p").post, "o", settings)
    assert rendering.parts[0].text == "Photo: Jo"


def test_telegram_sends_a_long_photo_post_as_photo_then_text(project: Project) -> None:
    """Render, not the publisher, splits it: preview shows the two messages really sent."""
    project.image()
    image = "image: {file: images/photo.jpg, alt: A march., credit: Jane Doe}\n"
    project.write("t.yaml", f"id: t\nat: 2027-01-14 09:00\ntext: {'Word ' * 249}end\n{image}")
    project.write("s.yaml", f"id: s\nat: 2027-01-14 09:00\ntext: Short.\n{image}")
    settings = project.settings()
    catalog = load_posts(settings)
    (part,) = render_post(catalog.get("t").post, "telegram", settings).parts
    photo, words = part.messages
    assert (photo.text, photo.image) == ("📷 Jane Doe", part.image)
    assert (words.text, words.image) == (part.text, None)
    (part,) = render_post(catalog.get("s").post, "telegram", settings).parts
    assert [(m.text, m.image) for m in part.messages] == [(part.text, part.image)]


def test_an_override_can_replace_the_image_quote_and_thread(project: Project) -> None:
    """Overrides are models, not dicts: replacing nested fields renders (it used to crash every
    command and the daemon's watcher with AttributeError)."""
    project.image()
    project.image("images/other.jpg")
    project.write(
        "o.yaml",
        """\
        id: o
        at: 2027-01-14 09:00
        accounts: [outbox, bluesky]
        text: The post.
        image: {file: images/photo.jpg, alt: A march., credit: Jane Doe}
        overrides:
          bluesky:
            image: {file: images/other.jpg, alt: Another march., credit: Ana Pérez}
            quote: {text: Solidarity now., by: Ana Pérez}
            thread:
              - Part two.
              - {text: Part three., image: {url: "https://example.org/a.jpg", alt: A., credit: B}}
        """,
    )
    settings = project.settings()
    post = load_posts(settings).get("o").post
    sky = render_post(post, "bluesky", settings)
    assert [p.image.credit if p.image else None for p in sky.parts] == ["Ana Pérez", None, "B"]
    assert "“Solidarity now.”\n— Ana Pérez" in sky.parts[0].text
    assert sky.parts[0].text.endswith("📷 Ana Pérez") and sky.parts[2].text.endswith("📷 B")
    (plain,) = render_post(post, "outbox", settings).parts
    assert plain.image is not None and plain.image.credit == "Jane Doe"


def test_a_post_of_only_a_thread_is_led_by_its_first_part(project: Project) -> None:
    """No text of its own: the first thread part is the post and carries the pack's link and
    image (it used to go out as a bare link nobody wrote, the thread replying to it)."""
    project.image()
    project.write(
        "t.yaml",
        """\
        link: https://example.org/article
        image: {file: images/photo.jpg, alt: A march., credit: Jane Doe}
        posts:
          - id: t
            at: 2027-01-14 09:00
            thread: [Why it matters 🧵, Second part., Third part.]
        """,
    )
    settings = project.settings()
    parts = render_post(load_posts(settings).get("t").post, "outbox", settings).parts
    assert [p.text.split("\n")[0] for p in parts] == [
        "Why it matters 🧵",
        "Second part.",
        "Third part.",
    ]
    assert "https://example.org/article" in parts[0].text and parts[0].image is not None
    assert parts[0].text.endswith("📷 Jane Doe")
