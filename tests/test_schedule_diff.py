"""`postscheduler diff BASE [HEAD]`: a pull request's effect on the schedule, from git."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import Project
from .test_gitsource import GIT_ENV

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

CONFIG = """\
timezone: Europe/London
accounts:
  outbox: {platform: outbox, path: outbox}
  x: {platform: x, consumer_key: "${A}", consumer_secret: "${B}", access_token: "${C}",
      access_token_secret: "${D}"}
defaults: {accounts: [outbox, x]}
"""


def git(project: Project, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=project.root,
        check=True,
        capture_output=True,
        env={**os.environ, **GIT_ENV},
    )


def run(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postscheduler", "diff", *args, "-c", str(project.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def repo(make_project: object) -> Project:
    project: Project = make_project(CONFIG)  # type: ignore[operator]
    project.write("a.yaml", "id: a\nat: 2027-01-14 09:00\ntext: Stays.\n")
    project.write("b.yaml", "id: b\nat: 2027-01-15 09:00\ntext: Moves.\n")
    project.write("c.yaml", "id: c\nat: 2027-01-16 09:00\ntext: Before the edit.\n")
    project.write("gone.yaml", "id: gone\nat: 2027-01-17 09:00\ntext: Removed.\n")
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", ".")
    git(project, "commit", "--quiet", "-m", "base")
    git(project, "checkout", "--quiet", "-b", "feature")
    project.write("b.yaml", "id: b\nat: 2027-01-15 18:30\ntext: Moves.\n")
    project.write("c.yaml", "id: c\nat: 2027-01-16 09:00\ntext: After @everyone <b>x</b>\n")
    project.write("new.yaml", "id: new\nat: 2027-01-20 12:00\ntext: Added.\n")
    project.write("bad.yaml", "id: bad\nat: 2027-01-21 12:00\ntext: [not, text]\n")
    (project.posts / "gone.yaml").unlink()
    return project


def test_the_working_tree_against_main(repo: Project) -> None:
    done = run(repo, "main")
    assert done.returncode == 1, done.stderr  # the change brings an error
    out = done.stdout
    assert "+ added   new at Wed 2027-01-20 12:00 GMT (posts/new.yaml:1)" in out
    assert "- removed gone, was at Sun 2027-01-17 09:00 GMT (posts/gone.yaml:1)" in out
    assert (
        "~ moved   b: Fri 2027-01-15 09:00 GMT → Fri 2027-01-15 18:30 GMT (posts/b.yaml:1)" in out
    )
    assert "~ edited  c (posts/c.yaml:1)" in out
    assert "      - Before the edit." in out and "      + After @everyone <b>x</b>" in out
    assert "outbox part 1:" in out and "x part 1:" in out  # per account
    assert "! error   posts/bad.yaml:3:7: text: input should be a valid string" in out
    assert "posts/a.yaml" not in out  # unchanged: not listed
    assert "+ added   bad, held: its file has errors (posts/bad.yaml:1)" in out


def test_two_revisions_as_markdown_and_json(repo: Project) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "feature")
    (repo.posts / "new.yaml").unlink()  # the working tree is not what is compared
    md = run(repo, "main", "feature", "--format", "markdown").stdout
    assert md.startswith("### Schedule changes: `main` → feature")
    assert "| new | added, at Wed 2027-01-20 12:00 GMT | `posts/new.yaml:1` |" in md
    assert "moved: Fri 2027-01-15 09:00 GMT → **Fri 2027-01-15 18:30 GMT**" in md
    assert "<details><summary>c on outbox</summary>" in md
    assert "+ After @everyone <b>x</b>" in md  # inside a code fence: inert
    assert "- `posts/bad.yaml:3:7`: text: input should be a valid string" in md
    data = json.loads(run(repo, "main", "feature", "--format", "json").stdout)
    kinds = {(c["kind"], c["post_id"]) for c in data["changes"]}
    assert kinds == {
        ("added", "new"),
        ("added", "bad"),
        ("removed", "gone"),
        ("moved", "b"),
        ("edited", "c"),
    }
    assert [e["code"] for e in data["new_errors"]] == ["invalid-type"] or data["new_errors"]


def test_no_change_and_a_bad_revision(repo: Project) -> None:
    same = run(repo, "main", "main")
    assert same.returncode == 0 and "the schedule does not change" in same.stdout
    wrong = run(repo, "no-such-branch")
    assert wrong.returncode == 2 and "git rev-parse" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_diff_keeps_nothing_of_the_revisions_it_reads(
    repo: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revisions are read from scratch folders: kept in the state folder, their parses
    would stand in for the working tree's, to be thrown out at the next command."""
    from postscheduler.delivery.schedule_diff import schedule_diff
    from postscheduler.posts import cache as cache_module
    from postscheduler.posts.parsed import FILE_NAME
    from postscheduler.posts.rules import validate

    monkeypatch.setattr(cache_module, "SAVE_AFTER", 1)  # any read worth keeping
    for name, value in (("A", "a"), ("B", "b"), ("C", "c"), ("D", "d")):
        monkeypatch.setenv(name, value)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "feature")
    settings = repo.settings()
    kept = settings.state_dir / FILE_NAME
    now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert schedule_diff(settings, "main", "feature", now=now).changes
    assert not kept.exists()
    validate(settings, None, now)  # a command on the working tree does keep its read
    assert kept.is_file()
