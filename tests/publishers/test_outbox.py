"""Outbox specifics: names that collide, private files that stay private, a folder it cannot
write."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import stat
from pathlib import Path

import pytest

from postscheduler.errors import OutcomeUnknownError, PermanentError, TransientError
from postscheduler.ledger import DeliveryKey
from postscheduler.publishers import make_publisher
from postscheduler.publishers.base import write_private_file

from ..conftest import Project
from .jobs import make_job


def test_deliveries_whose_names_collide_each_get_their_file(project: Project) -> None:
    project.config_path.write_text(
        "accounts:\n  c: {platform: outbox, path: out}\n  b.c: {platform: outbox, path: out}\n"
    )
    settings = project.settings()
    first = dataclasses.replace(
        make_job("c", "Post a.b to c.", identity="postscheduler-aaaa"), key=DeliveryKey("a.b", "c")
    )
    second = dataclasses.replace(
        make_job("b.c", "Post a to b.c.", identity="postscheduler-bbbb"),
        key=DeliveryKey("a", "b.c"),
    )

    async def go() -> None:
        await make_publisher("c", settings).publish(first)
        await make_publisher("b.c", settings).publish(second)
        await make_publisher("b.c", settings).publish(second)  # a resend changes nothing

    asyncio.run(go())
    texts = sorted(json.loads(f.read_text())["text"] for f in (project.root / "out").glob("*.json"))
    assert texts == ["Post a to b.c.", "Post a.b to c."]


def test_a_private_file_is_0600_whatever_was_left_behind(tmp_path: Path) -> None:
    target = tmp_path / "x-acct.refresh-token"
    leftover = tmp_path / "x-acct.refresh-token.tmp"
    leftover.write_text("old")
    leftover.chmod(0o644)  # a crash left it, created by another umask
    write_private_file(target, "canary-token")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_folder_it_cannot_write_is_a_failure_that_says_so(project: Project) -> None:
    """A file where the folder should be will not fix itself (failed, retry once fixed); a
    full disk may (retried); a timeline that cannot be written after the delivery's file is
    an outcome to settle, and the next try completes it."""
    project.config_path.write_text("accounts:\n  o: {platform: outbox, path: out}\n")
    publisher = make_publisher("o", project.settings())
    job = make_job("o", "Hello.", identity="postscheduler-cccc")
    (project.root / "out").write_text("a file, not a folder")
    with pytest.raises(PermanentError, match=r"cannot write to the outbox folder .*/out: File"):
        asyncio.run(publisher.publish(job))
    with pytest.raises(PermanentError, match="outbox folder"):
        asyncio.run(publisher.check_credentials())
    (project.root / "out").unlink()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(TransientError, match="No space left on device"):
            asyncio.run(publisher.publish(job))
    assert not list((project.root / "out").glob("*.json"))
    timeline = project.root / "out" / "timeline.txt"
    timeline.mkdir()  # appending to it fails
    with pytest.raises(OutcomeUnknownError, match="is in the outbox but its timeline entry"):
        asyncio.run(publisher.publish(job))
    timeline.rmdir()
    asyncio.run(publisher.publish(job))
    assert timeline.read_text().count("postscheduler-cccc") == 1
