"""``posts_repo:``: the posts come from a git repository, so a merged pull request reaches the
schedule without a cron job of the user's.

The daemon keeps a clone of its own (``posts_repo.checkout``) and, every ``posts_repo.every``,
fetches the branch and fast-forwards to it. Only a fast-forward is taken: a force-push, a
history that diverged or a checkout edited by hand is refused (the daemon keeps publishing
what it has, and a person is told), because resetting to whatever the remote says would let
one mistaken push rewrite the schedule. The file watcher then sees the changed files and
reloads them like any edit.

Uses the ``git`` command-line tool (a documented requirement for ``posts_repo``), with no
terminal prompts: credentials come from an SSH deploy key or a credential helper.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from ..config import PostsRepo
from ..errors import PostschedulerError

GIT_TIMEOUT = 120.0  # seconds for one git command (a clone of a large repository)


class GitSourceError(PostschedulerError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Synced:
    before: str | None  # the commit the checkout was at (None: it was just cloned)
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


class GitSource:
    def __init__(self, repo: PostsRepo, checkout: Path) -> None:
        self.repo = repo
        self.checkout = checkout

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        git = shutil.which("git")
        if git is None:
            raise GitSourceError(
                "posts_repo needs the git command-line tool: install git (apt-get install git)"
            )
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",  # never wait for a password nobody will type
            "GIT_ASKPASS": "true",
            "LC_ALL": "C",  # git's words, in the log, the same on every machine
        }
        try:
            done = subprocess.run(
                [git, *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitSourceError(f"git {args[0]} took more than {GIT_TIMEOUT:g} s") from None
        except OSError as exc:
            raise GitSourceError(f"git {args[0]} could not run: {exc.strerror}") from None
        if done.returncode != 0:
            words = (done.stderr or done.stdout).strip().splitlines()
            raise GitSourceError(
                f"git {args[0]} failed: " + " / ".join(w.strip() for w in words[-3:] if w.strip())
            )
        return done.stdout.strip()

    def head(self) -> str | None:
        if not (self.checkout / ".git").exists():
            return None
        return self._git("rev-parse", "HEAD", cwd=self.checkout)

    def sync(self) -> Synced:
        """Clone, or fetch and fast-forward. Blocking: run it on a worker thread."""
        branch = self.repo.branch
        before = self.head()
        if before is None:
            if self.checkout.exists() and any(self.checkout.iterdir()):
                raise GitSourceError(
                    f"{self.checkout} is there but is not a git checkout: move it away, and "
                    "the daemon clones posts_repo there"
                )
            self.checkout.parent.mkdir(parents=True, exist_ok=True)
            self._git(
                "clone",
                "--quiet",
                "--branch",
                branch,
                "--single-branch",
                "--",
                self.repo.url,
                str(self.checkout),
            )
            return Synced(None, self._git("rev-parse", "HEAD", cwd=self.checkout))
        self._git(
            "fetch",
            "--quiet",
            "origin",
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
            cwd=self.checkout,
        )
        remote = self._git("rev-parse", f"refs/remotes/origin/{branch}", cwd=self.checkout)
        if remote == before:
            return Synced(before, before)
        try:
            self._git("merge-base", "--is-ancestor", before, remote, cwd=self.checkout)
        except GitSourceError:
            raise GitSourceError(
                f"{branch} on {self.repo.url} was force-pushed or rewritten: the checkout is at "
                f"{before[:12]}, which is not in the branch's history ({remote[:12]}). The "
                "daemon keeps publishing what it has. If the new history is right, run `git -C "
                f"{self.checkout} reset --hard origin/{branch}`; the daemon follows it from there"
            ) from None
        try:
            self._git("merge", "--ff-only", "--quiet", remote, cwd=self.checkout)
        except GitSourceError as exc:
            raise GitSourceError(
                f"cannot fast-forward {self.checkout} to {remote[:12]} ({exc}): was the checkout "
                f"edited by hand? `git -C {self.checkout} status` says; the daemon keeps what "
                "it has until then"
            ) from None
        return Synced(before, remote)
