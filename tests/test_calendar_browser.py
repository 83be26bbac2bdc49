"""The calendar page in a real browser: Debian's Chromium, driven by Playwright.

Skips (saying how to enable it) where Chromium or Playwright is missing; ``.ci/run`` installs
both and sets POSTSCHEDULER_REQUIRE_TOOLS=1, which makes a missing browser a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PROJECT_ROOT, Project
from .test_calendar import calendar as write_calendar

CHROMIUM = os.environ.get("POSTSCHEDULER_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("POSTSCHEDULER_REQUIRE_TOOLS") == "1"
ARTIFACTS = PROJECT_ROOT / "build" / "test-artifacts"
# Chromium on a machine without internet: no background requests to Google, no sandbox (CI
# runs as root), no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CONFIG = """\
timezone: Europe/London
posts_dir: posts
ledger: .postscheduler/ledger.db
accounts:
  outbox: {platform: outbox, path: outbox}
  mastodon: {platform: mastodon, instance: "https://mastodon.example", token: "${T1}"}
  bluesky: {platform: bluesky, handle: campaign.example, app_password: "${T2}"}
  x: {platform: x, consumer_key: "${A}", consumer_secret: "${B}", access_token: "${C}",
      access_token_secret: "${D}"}
defaults: {accounts: [outbox, mastodon, bluesky, x]}
"""

HOSTILE = """\
id: hostile
at: 2027-01-13 12:00
text: "Hi <script>window.__pwned = 1</script><img src=x onerror=\\"window.__pwned=2\\"> #Peru @ally"
image:
  file: images/photo.jpg
  alt: 'A banner"><script>window.__pwned=4</script>'
  credit: "</figcaption><script>window.__pwned=5</script>"
accounts: [outbox, mastodon]
"""


def browser_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRED:
            pytest.fail("POSTSCHEDULER_REQUIRE_TOOLS=1 but playwright is not installed")
        pytest.skip("playwright is a test extra: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        if REQUIRED:
            pytest.fail(f"POSTSCHEDULER_REQUIRE_TOOLS=1 but {CHROMIUM} is missing")
        pytest.skip(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (or set POSTSCHEDULER_CHROMIUM)"
        )
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = browser_or_skip()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def calendar_file(make_project: Any, tmp_path: Path) -> Path:
    project: Project = make_project(CONFIG)
    shutil.rmtree(project.posts)
    shutil.copytree(PROJECT_ROOT / "posts", project.posts)
    project.image()
    project.write("hostile.yaml", HOSTILE)
    # The week the clocks go forward in London (01:00 GMT on 28 March 2027 becomes 02:00 BST).
    project.write(
        "dst-before.yaml",
        "id: dst-before\nat: 2027-03-27 23:30\ntext: Saturday night.\naccounts: [outbox]\n",
    )
    project.write(
        "dst-after.yaml",
        "id: dst-after\nat: 2027-03-28 09:00\ntext: Sunday morning.\naccounts: [outbox]\n",
    )
    project.write("broken.yaml", "id: broken\nat: 2027-01-15 10:00\ntext: [not, text]\n")
    done, _ = write_calendar(project, "--from", "2027-01-11", "--days", "84")
    assert done.returncode == 0, done.stderr
    return project.root / "calendar.html"


def open_page(browser: Any, path: Path, **context: Any) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(**context)
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(5000)
    page.goto(path.as_uri())
    return page, requests, problems


def test_every_delivery_is_on_its_day_in_the_configured_zone(
    browser: Any, calendar_file: Path
) -> None:
    page, requests, _ = open_page(browser, calendar_file)
    entries = page.eval_on_selector_all(
        "a.entry",
        "els => els.map(e => [e.dataset.post, e.dataset.when, e.closest('.day').dataset.date,"
        " e.querySelector('.t').textContent])",
    )
    placed = {post: (when[:10], day, shown) for post, when, day, shown in entries}
    assert placed["peru-article"] == ("2027-01-14", "2027-01-14", "09:00")
    assert placed["peru-thread"] == ("2027-01-19", "2027-01-19", "10:00")
    assert placed["dst-before"] == ("2027-03-27", "2027-03-27", "23:30")
    assert placed["dst-after"] == ("2027-03-28", "2027-03-28", "09:00")  # BST now
    assert all(when == day for when, day, _ in placed.values())
    assert requests == [calendar_file.as_uri()]  # nothing from the network
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "calendar.png"), full_page=True)
    page.close()


def test_opening_a_post_shows_each_account_s_mockup_with_credit_and_alt(
    browser: Any, calendar_file: Path
) -> None:
    page, _, _ = open_page(browser, calendar_file)
    page.click('a.entry[data-post="peru-article"]')
    assert page.url.endswith("#post-peru-article")
    section = page.locator("#post-peru-article")
    assert section.is_visible()
    mocks = section.locator("article.mock")
    platforms = mocks.evaluate_all("els => els.map(e => e.dataset.platform)")
    assert platforms == ["outbox", "mastodon", "bluesky", "x"]
    for i in range(4):
        mock = mocks.nth(i)
        assert "Kawsachun News" in mock.inner_text()  # the credit, on every platform
        alt = mock.locator("img").get_attribute("alt")
        assert alt and alt.startswith("Market vendors in Juliaca")
    x_text = mocks.nth(3).inner_text()
    assert "example.org/2023/01/per…" in x_text  # X shows links short
    bluesky = mocks.nth(2)
    assert bluesky.locator("a.link").get_attribute("href", timeout=1000).startswith("https://")
    assert page.locator("#post-peru-thread .reply").count() >= 3 * 4  # parts as replies
    page.close()


def test_no_script_from_a_post_runs_and_its_text_is_shown_as_text(
    browser: Any, calendar_file: Path
) -> None:
    page, requests, problems = open_page(browser, calendar_file)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("script").count() == 0
    text = page.locator("#post-hostile article.mock").first.inner_text()
    assert "<script>window.__pwned = 1</script>" in text  # shown, not run
    assert "javascript:" not in page.content().split("<body", 1)[-1].replace("&", "")
    assert page.locator("#post-hostile a[href^='javascript:']").count() == 0
    alt = page.locator("#post-hostile img").first.get_attribute("alt")
    assert alt == 'A banner"><script>window.__pwned=4</script>'
    assert page.locator("#post-hostile .tag").first.inner_text() == "#Peru"
    # Held by errors in its file, with the error (no ledger yet: listed apart).
    held = page.locator("body").inner_text().split("Held: files with errors", 1)[1]
    assert "broken.yaml:3" in held and "input should be a valid string" in held
    assert requests == [calendar_file.as_uri()]
    assert not [p for p in problems if "Content Security Policy" not in p], problems
    page.close()


def test_the_page_reads_on_a_phone(browser: Any, calendar_file: Path) -> None:
    page, _, _ = open_page(browser, calendar_file, viewport={"width": 390, "height": 844})
    columns = page.eval_on_selector(
        ".week", "e => getComputedStyle(e).gridTemplateColumns.split(' ').length"
    )
    assert columns == 1
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > 391)"
        ".map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 40))"
    )
    assert wide == []  # nothing wider than the screen
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "calendar-phone.png"))
    page.close()
