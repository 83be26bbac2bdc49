from __future__ import annotations

import datetime as dt
import os

import pytest

from postscheduler.errors import Finding
from postscheduler.posts.rules import validate

from .conftest import Project

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def _findings(project: Project) -> list[Finding]:
    return validate(project.settings(), now=NOW).findings


def _codes(project: Project) -> list[str]:
    return sorted(f.code for f in _findings(project))


IMAGE_POST = """\
id: p
at: 2027-01-14 09:00
text: A march.
accounts: [{accounts}]
image:
  file: {file}
  alt: Marchers with a banner.
  credit: Jane Doe
"""


def test_clean_image_post(project: Project) -> None:
    project.image()
    project.write(
        "p.yaml",
        IMAGE_POST.format(accounts="outbox, mastodon, bluesky, x", file="images/photo.jpg"),
    )
    assert _findings(project) == []


def test_image_without_credit_or_alt(project: Project) -> None:
    project.image()
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\ntext: hi\n"
        "image: {file: images/photo.jpg, alt: ' ', credit: ''}\n",
    )
    findings = _findings(project)
    assert len(findings) == 2
    assert all(f.post_id == "p" and f.line == 4 for f in findings)
    assert any("photo credit" in f.message for f in findings)
    assert any("alt text" in f.message for f in findings)


def test_image_missing(project: Project) -> None:
    project.write("p.yaml", IMAGE_POST.format(accounts="outbox", file="images/nope.jpg"))
    (f,) = _findings(project)
    assert (f.code, f.line, f.column) == ("image-invalid", 6, 9)
    assert "nope.jpg is not in" in f.message and "images/" in f.message


def test_image_escaping_posts_dir(project: Project) -> None:
    (project.root / "secret.jpg").write_bytes(b"x")
    project.write("p.yaml", IMAGE_POST.format(accounts="outbox", file="../secret.jpg"))
    (f,) = _findings(project)
    assert f.code == "image-invalid" and "outside posts/" in f.message


def test_image_symlink_escaping_posts_dir(project: Project) -> None:
    outside = project.root / "outside.jpg"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(outside, "JPEG")
    (project.posts / "images" / "link.jpg").symlink_to(outside)
    project.write("p.yaml", IMAGE_POST.format(accounts="outbox", file="images/link.jpg"))
    (f,) = _findings(project)
    assert f.code == "image-invalid" and "symlink" in f.message


def test_absolute_image_path(project: Project) -> None:
    project.write("p.yaml", IMAGE_POST.format(accounts="outbox", file="/etc/hostname"))
    (f,) = _findings(project)
    assert f.code == "image-invalid" and "absolute" in f.message


def test_not_really_an_image(project: Project) -> None:
    project.write_bytes("images/fake.jpg", b"<html>not a photo</html>")
    project.write("p.yaml", IMAGE_POST.format(accounts="outbox", file="images/fake.jpg"))
    (f,) = _findings(project)
    assert f.code == "image-invalid" and "not an image" in f.message


def test_image_too_large_for_bluesky_is_refitted_with_a_warning(project: Project) -> None:
    path = project.image("images/big.png", fmt="PNG", size=(700, 700))
    os.truncate(path, 1_200_000)  # PNG readers stop at IEND; the padding only adds bytes
    project.write(
        "p.yaml", IMAGE_POST.format(accounts="outbox, mastodon, bluesky", file="images/big.png")
    )
    (f,) = _findings(project)
    assert (f.code, f.account, f.is_error) == ("image-refitted", "bluesky", False)
    assert "1,000,000" in f.message and "re-encoded" in f.message


def test_image_too_large_for_x_is_an_error(project: Project) -> None:
    path = project.image("images/big.png", fmt="PNG", size=(700, 700))
    os.truncate(path, 5_300_000)
    project.write("p.yaml", IMAGE_POST.format(accounts="outbox, x", file="images/big.png"))
    (f,) = _findings(project)
    assert (f.code, f.account, f.is_error) == ("image-too-large", "x", True)


def test_image_format_per_platform(project: Project) -> None:
    project.image("images/photo.bmp", fmt="BMP")
    project.write("p.yaml", IMAGE_POST.format(accounts="mastodon, outbox", file="images/photo.bmp"))
    (f,) = _findings(project)
    assert (f.code, f.account) == ("image-format", "mastodon")
    assert f.hint == "convert it to JPEG or PNG"


def test_slack_needs_image_url(project: Project) -> None:
    project.image()
    project.write("p.yaml", IMAGE_POST.format(accounts="slack", file="images/photo.jpg"))
    (f,) = _findings(project)
    assert (f.code, f.account) == ("image-needs-url", "slack")


def test_unknown_account_suggests(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: hi\naccounts: [outbox, mastodn]\n")
    (f,) = _findings(project)
    assert (f.code, f.line, f.column) == ("unknown-account", 4, 20)
    assert f.hint == "did you mean 'mastodon'?"


def test_credit_counts_toward_the_limit(project: Project) -> None:
    # 300 graphemes of text fit Bluesky alone; the credit line pushes it over.
    project.image()
    text = "a" * 290
    project.write(
        "p.yaml",
        f"id: p\nat: 2027-01-14 09:00\naccounts: [bluesky]\ntext: {text}\n"
        "image: {file: images/photo.jpg, alt: A banner., credit: Jane Doe}\n",
    )
    (f,) = _findings(project)
    assert (f.code, f.account, f.line) == ("text-too-long", "bluesky", 4)
    assert "302/300 graphemes" in f.message  # 290 + blank line + "📷 Jane Doe"


@pytest.mark.parametrize(
    ("account", "text", "over"),
    [
        ("mastodon", "x" * 476 + " https://example.org/" + "p" * 200, False),  # URL counts 23
        ("mastodon", "x" * 477 + " https://example.org/" + "p" * 200, True),
        ("x", "é" * 280, False),
        ("x", "日" * 141, True),  # CJK weighs 2
        ("bluesky", "👨‍👩‍👧‍👦" * 120, False),  # 120 graphemes, 3000 bytes
        ("bluesky", "👨‍👩‍👧‍👦" * 121, True),  # bytes over
        ("telegram", "x" * 4096, False),
        ("telegram", "x" * 4097, True),
    ],
)
def test_text_limits_per_platform(project: Project, account: str, text: str, over: bool) -> None:
    project.write("p.yaml", f'id: p\nat: 2027-01-14 09:00\naccounts: [{account}]\ntext: "{text}"\n')
    codes = _codes(project)
    assert codes == (["text-too-long"] if over else [])


def test_account_max_characters(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        "accounts:\n  short: {platform: outbox, max_characters: 10}\n"
        "defaults: {accounts: [short]}\n"
    )
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: eleven char\n")
    (f,) = _findings(project)
    assert f.code == "text-too-long" and "11/10" in f.message


def test_thread_part_over_limit_points_at_the_part(project: Project) -> None:
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\naccounts: [x]\ntext: start\n"
        f"thread:\n  - ok\n  - {'y' * 281}\n",
    )
    (f,) = _findings(project)
    assert f.line == 7 and "thread part 3" in f.message


def test_override_fixes_the_limit_for_one_platform(project: Project) -> None:
    long = "z" * 400
    project.write(
        "p.yaml",
        f"id: p\nat: 2027-01-14 09:00\naccounts: [mastodon, bluesky]\ntext: {long}\n"
        "overrides:\n  bluesky: {text: short enough}\n",
    )
    assert _findings(project) == []


def test_unknown_override_key(project: Project) -> None:
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\ntext: hi\noverrides:\n  blusky: {text: x}\n",
    )
    (f,) = _findings(project)
    assert (f.code, f.line) == ("unknown-override", 5)


def test_past_post_is_a_warning(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2026-12-01 09:00\ntext: hi\n")
    (f,) = _findings(project)
    assert (f.code, f.is_error) == ("in-the-past", False)


def test_errors_block_only_their_post(project: Project) -> None:
    project.write("a.yaml", "id: a\nat: 2027-01-14 09:00\ntext: hi\naccounts: [nope]\n")
    project.write("b.yaml", "id: b\nat: 2027-01-14 09:00\ntext: hi\n")
    catalog = validate(project.settings(), now=NOW)
    assert catalog.blocked_ids == {"a"}


def test_an_image_url_on_a_local_address_is_an_error(project: Project) -> None:
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\ntext: Hi.\n"
        "image: {url: 'http://127.0.0.1:8080/internal-only/secret.json', alt: A., credit: B}\n",
    )
    project.write(
        "q.yaml",
        "id: q\nat: 2027-01-14 09:00\ntext: Hi.\n"
        "image: {url: 'https://cdn.example.org/a.jpg', alt: A., credit: B}\n",
    )
    found = [f for f in validate(project.settings()).findings if f.code == "image-url-private"]
    assert [(f.post_id, f.line) for f in found] == [("p", 4)]


def test_a_content_warning_a_platform_cannot_show_is_a_warning_per_account(
    project: Project,
) -> None:
    project.write(
        "cw.yaml",
        "id: cw\nat: 2027-01-14 09:00\ntext: Hard news.\ncontent_warning: violence\n"
        "accounts: [mastodon, x, telegram, outbox]\n",
    )
    found = validate(project.settings()).findings
    shown = sorted(f.account for f in found if f.code == "content-warning-not-shown")
    assert shown == ["telegram", "x"]  # Mastodon and the outbox carry it
    assert all(f.line == 4 for f in found if f.code == "content-warning-not-shown")
