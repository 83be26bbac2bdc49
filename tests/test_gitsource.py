"""``posts_repo:``: the daemon follows a git repository, fast-forward only (a local bare repo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from postscheduler.config import load_settings
from postscheduler.delivery.gitsource import GitSource, GitSourceError
from postscheduler.errors import ConfigError

from .conftest import Project
from .test_daemon import Daemon, at, wait_for
from .test_daemon import cli as run_cli

if shutil.which("git") is None:
    if os.environ.get("POSTSCHEDULER_REQUIRE_TOOLS") == "1":  # .ci/run installed it
        raise RuntimeError("POSTSCHEDULER_REQUIRE_TOOLS=1 but git is not installed")
    pytest.skip("git is not installed (apt-get install git)", allow_module_level=True)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Volunteer",
    "GIT_AUTHOR_EMAIL": "v@campaign.test",
    "GIT_COMMITTER_NAME": "Volunteer",
    "GIT_COMMITTER_EMAIL": "v@campaign.test",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return done.stdout.strip()


class Remote:
    """A bare repository (what GitHub holds) and a volunteer's clone that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "campaign.git"
        self.work = root / "volunteer"
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(root, "clone", "--quiet", str(self.bare), str(self.work))
        git(self.work, "checkout", "--quiet", "-b", "main")
        self.push("README.md", "Campaign posts\n", "start")

    def push(self, name: str, text: str, message: str) -> str:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        git(self.work, "add", name)
        git(self.work, "commit", "--quiet", "-m", message)
        git(self.work, "push", "--quiet", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def force_push_rewrite(self) -> None:
        git(self.work, "commit", "--quiet", "--amend", "-m", "rewritten")
        git(self.work, "push", "--quiet", "--force", "origin", "main")


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "remote")


def source(remote: Remote, tmp_path: Path) -> GitSource:
    settings_dir = tmp_path / "server"
    settings_dir.mkdir(exist_ok=True)
    (settings_dir / "scheduler.yaml").write_text(
        f'posts_repo: {{url: "{remote.bare}", branch: main}}\n'
    )
    settings = load_settings(settings_dir / "scheduler.yaml", environ={})
    assert settings.config.posts_repo is not None and settings.checkout is not None
    assert settings.posts_dir == settings.checkout / "posts"
    return GitSource(settings.config.posts_repo, settings.checkout)


def test_clone_then_fast_forward_only(remote: Remote, tmp_path: Path) -> None:
    src = source(remote, tmp_path)
    first = src.sync()
    assert first.before is None and first.changed
    assert src.sync().changed is False
    new = remote.push("posts/a.yaml", "id: a\n", "a post")
    moved = src.sync()
    assert (moved.before, moved.after) == (first.after, new)
    assert (src.checkout / "posts" / "a.yaml").read_text() == "id: a\n"


def test_a_force_push_is_refused_and_the_checkout_kept(remote: Remote, tmp_path: Path) -> None:
    src = source(remote, tmp_path)
    remote.push("posts/a.yaml", "id: a\n", "a post")
    src.sync()
    kept = src.head()
    remote.force_push_rewrite()
    with pytest.raises(GitSourceError, match="force-pushed or rewritten"):
        src.sync()
    assert src.head() == kept and (src.checkout / "posts" / "a.yaml").exists()


def test_a_checkout_edited_by_hand_is_not_overwritten(remote: Remote, tmp_path: Path) -> None:
    src = source(remote, tmp_path)
    remote.push("posts/a.yaml", "id: a\n", "a post")
    src.sync()
    (src.checkout / "posts" / "a.yaml").write_text("id: a\ntext: edited on the server\n")
    remote.push("posts/a.yaml", "id: a\ntext: from the PR\n", "edit")
    with pytest.raises(GitSourceError, match="edited by hand"):
        src.sync()
    assert "edited on the server" in (src.checkout / "posts" / "a.yaml").read_text()


def test_a_url_with_a_password_is_refused(tmp_path: Path) -> None:
    (tmp_path / "scheduler.yaml").write_text(
        'posts_repo: {url: "https://bot:hunter2hunter2@git.example/c.git"}\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "scheduler.yaml", environ={})
    text = "".join(f.message for f in info.value.findings)
    assert "deploy key" in text and "hunter2hunter2" not in text


def test_a_push_reaches_a_running_daemon(
    remote: Remote, make_project: Callable[[str], Project], tmp_path: Path
) -> None:
    project = make_project(
        "timezone: UTC\nledger: state/ledger.db\n"
        "accounts:\n  outbox: {platform: outbox, path: outbox}\n"
        "defaults: {accounts: [outbox]}\n"
        f'posts_repo: {{url: "{remote.bare}", branch: main, every: 1s}}\n'
    )
    remote.push("posts/first.yaml", f"id: first\nat: {at(-1)}\ntext: Already merged.\n", "one")
    daemon = Daemon(
        [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
        env={**os.environ, **GIT_ENV},
    )
    sent = project.root / "outbox"
    try:
        assert wait_for(lambda: (sent / "first.outbox.1.json").exists()), daemon.lines
        # A pull request merged: its post is scheduled and sent without anyone on the server.
        remote.push("posts/merged.yaml", f"id: merged\nat: {at(3)}\ntext: Merged.\n", "PR #2")
        assert wait_for(lambda: (sent / "merged.outbox.1.json").exists()), daemon.lines
        assert daemon.logged("posts_repo: main moved")
        remote.force_push_rewrite()
        assert wait_for(lambda: daemon.logged("force-pushed or rewritten")), daemon.lines
        assert daemon.poll() is None  # an alert, not a crash
    finally:
        daemon.terminate()
        daemon.communicate(timeout=30)


def test_a_repository_that_cannot_be_cloned_is_a_clear_error(
    make_project: Callable[[str], Project], tmp_path: Path
) -> None:
    project = make_project(f'accounts: {{}}\nposts_repo: {{url: "{tmp_path / "nowhere.git"}"}}\n')
    done = run_cli(project, "run", "--once")
    assert done.returncode == 2, done.stderr
    assert "posts_repo" in done.stderr and "git clone failed" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_daemon_whose_first_clone_fails_tries_again(
    make_project: Callable[[str], Project], tmp_path: Path
) -> None:
    later = tmp_path / "later"
    project = make_project(
        "timezone: UTC\nledger: state/ledger.db\n"
        "accounts:\n  outbox: {platform: outbox, path: outbox}\n"
        "defaults: {accounts: [outbox]}\n"
        f'posts_repo: {{url: "{later / "campaign.git"}", every: 1s}}\n'
    )
    daemon = Daemon(
        [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
        env={**os.environ, **GIT_ENV},
    )
    try:
        assert wait_for(lambda: daemon.logged("trying again in 1 s")), daemon.lines
        remote = Remote(later)  # the repository appears (the network is up, the key added)
        remote.push("posts/p.yaml", f"id: p\nat: {at(-1)}\ntext: At last.\n", "p")
        sent = project.root / "outbox" / "p.outbox.1.json"
        assert wait_for(lambda: sent.exists()), daemon.lines
    finally:
        daemon.terminate()
        daemon.communicate(timeout=30)


def test_the_readme_posts_repo_example_is_a_valid_configuration(tmp_path: Path) -> None:
    from .conftest import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("```yaml\nposts_repo:\n", 1)[1].split("```", 1)[0]
    (tmp_path / "scheduler.yaml").write_text("posts_repo:\n" + block)
    settings = load_settings(tmp_path / "scheduler.yaml", environ={})
    assert settings.config.posts_repo is not None
    assert settings.posts_dir == tmp_path / ".postscheduler" / "posts-repo" / "posts"
