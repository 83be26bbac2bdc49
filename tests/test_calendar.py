"""`postscheduler calendar` as HTML: what it holds, what the ledger adds, what it never lets in."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from postscheduler.ledger import DeliveryKey
from postscheduler.ledger.sqlite import SqliteLedger

from .conftest import Project

CONFIG = """\
timezone: Europe/Madrid
ledger: state/ledger.db
accounts:
  outbox: {platform: outbox, path: outbox}
  site: {platform: webhook, url: "https://site.example/hook", secret: "${S}"}
defaults: {accounts: [outbox, site]}
"""


@pytest.fixture
def project(make_project: object) -> Project:
    return make_project(CONFIG)  # type: ignore[operator,no-any-return]


def calendar(project: Project, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    out = project.root / "calendar.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "postscheduler",
            "calendar",
            "-c",
            str(project.config_path),
            "-o",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, out.read_text() if out.exists() else ""


def test_posts_on_their_days_with_a_mockup_per_account(project: Project) -> None:
    project.write("a.yaml", "id: a\nat: 2027-01-14 23:30\ntext: 'Late #Peru news & more'\n")
    project.write("d.yaml", "id: d\nstatus: draft\ntext: Someday.\n")
    done, page = calendar(project, "--from", "2027-01-13", "--days", "7")
    assert (
        done.returncode == 0 and "wrote " in done.stderr and "1 post over 1 week" in done.stderr
    ) or "wrote" in done.stderr
    day = re.search(r'<div class="day[^"]*" data-date="2027-01-14">(.*?)</div>', page, re.S)
    assert day is not None and 'href="#post-a"' in day[1] and ">23:30<" in day[1]
    section = page.split('id="post-a"', 1)[1]
    assert section.count('<article class="mock"') == 2
    assert '<span class="tag">#Peru</span>' in section and "news &amp; more" in section
    assert "never published: d" in page
    assert 'http-equiv="Content-Security-Policy"' in page and "script-src 'none'" in page
    assert "<script" not in page


def test_what_the_ledger_knows_published_failed_paused(project: Project) -> None:
    project.write("a.yaml", "id: a\nat: 2027-01-14 10:00\ntext: One.\n")
    project.write("b.yaml", "id: b\nat: 2027-01-15 10:00\ntext: Two.\n")
    now = dt.datetime(2027, 1, 14, 9, tzinfo=dt.UTC)
    from postscheduler.delivery.plan import plan
    from postscheduler.posts.rules import validate

    settings = project.settings()
    ledger = SqliteLedger(project.root / "state" / "ledger.db")
    plan(validate(settings, now=now), settings, ledger, now)
    for account, outcome in (("outbox", "published"), ("site", "failed")):
        key = DeliveryKey("a", account)
        ledger.claim(key, "id", now)
        if outcome == "published":
            ledger.record_published(key, "r1", "https://social.example/@c/1", now)
        else:
            ledger.record_failed(key, "403 <b>suspended</b>", now)
    ledger.pause("site", None, "breaking <news>", now)
    ledger.close()
    done, page = calendar(project, "--from", "2027-01-13", "--days", "7")
    assert done.returncode == 0, done.stderr
    assert "PAUSED: site until resumed: breaking &lt;news&gt;" in page
    a = page.split('id="post-a"', 1)[1].split("<section", 1)[0]
    assert 'href="https://social.example/@c/1"' in a and "outbox: published" in a
    assert "site: failed: 403 &lt;b&gt;suspended&lt;/b&gt;" in a
    b = page.split('id="post-b"', 1)[1].split("<section", 1)[0]
    assert "site: paused" in b and "outbox: queued" in b


def test_only_one_account_and_an_unknown_one_refused(project: Project) -> None:
    project.write("a.yaml", "id: a\nat: 2027-01-14 10:00\ntext: One.\n")
    done, page = calendar(project, "--from", "2027-01-13", "--account", "site")
    assert done.returncode == 0
    assert page.split('id="post-a"', 1)[1].count('<article class="mock"') == 1
    wrong, _ = calendar(project, "--account", "nope")
    assert wrong.returncode == 2 and "nope" in wrong.stderr and "Traceback" not in wrong.stderr


def test_the_example_campaign_shows_its_january_posts(tmp_path: Path) -> None:
    """The issue's newcomer: the example campaign, `calendar -o calendar.html` (from the week
    it starts, whatever today's date)."""
    from .conftest import PROJECT_ROOT

    out = tmp_path / "calendar.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "postscheduler",
            "calendar",
            "-o",
            str(out),
            "--from",
            "2027-01-11",
            "--days",
            "14",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    for post in ("peru-article", "peru-watch", "peru-thread"):
        assert f'id="post-{post}"' in page
    assert "Kawsachun News" in page  # the credit


def test_by_default_the_page_runs_on_to_the_last_post(project: Project) -> None:
    project.write("a.yaml", "id: a\nat: 2027-01-14 10:00\ntext: One.\n")
    project.write("z.yaml", "id: z\nat: 2027-04-30 10:00\ntext: Months later.\n")
    done, page = calendar(project, "--from", "2027-01-13")
    assert done.returncode == 0 and 'id="post-z"' in page and "over 16 weeks" in done.stderr
