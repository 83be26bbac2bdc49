"""Outbox specifics: names that collide, and private files that stay private."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import stat
from pathlib import Path

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
