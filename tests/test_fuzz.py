"""Bad input ends in words, whatever it is: the example campaign's files damaged at random
(seeded), and every leaf of a full configuration given every kind of YAML value.

Longer runs of the same sweeps found tracebacks (an ``id:`` that was a list crashed the
alerter; a duration given as a list, a NUL in ``posts_dir``); each of those has a test of
its own, and these are the net for the next. A command may say there are errors (exit 1)
or that it cannot run (2); it never raises, and never prints a traceback.
"""

from __future__ import annotations

import copy
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from postscheduler.cli import app
from postscheduler.config import load_settings
from postscheduler.errors import ConfigError

from .conftest import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("before_the_examples")

TOKENS = ["[]", "{}", "null", "~", "-1", "0", "1e400", ".inf", "0x7fffffffffffffffffff"]
TOKENS += ["2027-13-45", "2027-02-30 25:61", "9999-12-31 23:59", "'\\u0000'", '"\\a"', "true"]
TOKENS += ["!!binary aGVsbG8=", "!!python/object:os.system", "*nope", "&a x", "<<: {}", "'#x'"]
TOKENS += ["'" + "x" * 3000 + "'", "[outbox, outbox]", "{file: ../../etc/passwd}", "|", ">-"]
TOKENS += ["http://127.0.0.1/x", "javascript:alert(1)", "- ", "? x", "%", "@x", "`x`", "''"]
KEYS = ["id", "at", "text", "thread", "image", "quote", "link", "accounts", "overrides"]
KEYS += ["expires", "status", "language", "posts", "credit", "alt", "file", "by", "timezone"]
KEYS += ["posts_dir", "ledger", "publishing", "late_grace", "retry", "min_gap", "platform"]
INSERTS = ["\t", "\x00", "\x07", "\ufeff", "\u202e", "'", '"', "{", "[", "&", "*", "!", "#"]
COMMANDS = [
    ["validate", "--format", "json"],
    ["validate", "posts"],
    ["queue", "--all"],
    ["preview", "peru-article"],
    ["preview", "peru-thread"],
    ["calendar", "-o", "calendar.html", "--from", "2027-01-10"],
    ["run", "--once", "--dry-run"],
    ["status"],
    ["history"],
]


def _mutate(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(7)
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2 and ":" in lines[i]:
            lines[i] = f"{lines[i].partition(':')[0]}: {rng.choice(TOKENS)}"
        elif op == 3:
            indent = len(lines[i]) - len(lines[i].lstrip())
            lines.insert(i, " " * indent + f"{rng.choice(KEYS)}: {rng.choice(TOKENS)}")
        elif op == 4:
            lines[i] = " " * rng.randint(1, 4) + lines[i]
        elif op == 5 and lines[i]:
            j = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:j] + rng.choice(INSERTS) + lines[i][j:]
        elif op == 6 and ":" in lines[i]:
            lines[i] = f"{rng.choice(KEYS)}:{lines[i].partition(':')[2]}"
    return "\n".join(lines)


@pytest.fixture
def campaign(tmp_path: Path) -> Iterator[Path]:
    """A copy of the example campaign (posts, image, scheduler.yaml), as the current folder."""
    shutil.copytree(PROJECT_ROOT / "posts", tmp_path / "posts")
    shutil.copy(PROJECT_ROOT / "scheduler.yaml", tmp_path / "scheduler.yaml")
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def _ends_in_words(args: list[str]) -> str | None:
    result = CliRunner().invoke(app, args, catch_exceptions=True)
    raised = result.exception is not None and not isinstance(result.exception, SystemExit)
    if raised or result.exit_code not in (0, 1, 2) or "Traceback" in result.output:
        return f"{args} exit {result.exit_code}: {result.exception!r} {result.output[-400:]}"
    return None


@pytest.mark.parametrize("seed", range(8))
def test_every_command_on_damaged_example_files_ends_in_words(campaign: Path, seed: int) -> None:
    rng = random.Random(seed)
    files = [campaign / "scheduler.yaml", *sorted((campaign / "posts").glob("*.yaml"))]
    originals = {f: f.read_text() for f in files}
    crashes = []
    for _ in range(20):
        for f, text in originals.items():
            f.write_text(text)
        damaged = rng.choice(files)
        damaged.write_text(_mutate(originals[damaged], rng))
        crash = _ends_in_words(rng.choice(COMMANDS))
        if crash is not None:
            crashes.append(f"{damaged.name}:\n{damaged.read_text()}\n{crash}")
    assert not crashes, "\n\n".join(crashes)


FULL_CONFIG: dict[str, Any] = {
    "timezone": "Europe/London",
    "posts_dir": "posts",
    "ledger": ".postscheduler/ledger.db",
    "credit_format": "📷 {credit}",
    "media_url": "https://campaign.example/posts",
    "accounts": {
        "outbox": {"platform": "outbox", "path": "outbox"},
        "mastodon": {"platform": "mastodon", "instance": "https://m.example", "token": "${T}"},
        "bluesky": {"platform": "bluesky", "handle": "a.example", "app_password": "${T}"},
        "telegram": {"platform": "telegram", "bot_token": "${T}", "chat_id": "@c"},
        "site": {"platform": "webhook", "url": "https://example.org/hook", "secret": "${T}"},
        "linkedin": {
            "platform": "linkedin",
            "author": "urn:li:organization:1",
            "token": "${T}",
            "version": 202611,
            "token_expires": "2027-03-01",
        },
    },
    "defaults": {"accounts": ["outbox"]},
    "publishing": {
        "late_grace": "30m",
        "retry": {"attempts": 5, "first_delay": "30s", "max_delay": "30m"},
        "min_gap": "0s",
        "max_per_hour": 6,
    },
    "link_cards": {"enabled": True, "timeout": "10s", "max_bytes": 2000000},
    "alerts": {
        "accounts": ["telegram"],
        "smtp": {
            "host": "smtp.example.org",
            "port": 587,
            "username": "a@x.org",
            "password": "${T}",
            "from": "a@x.org",
            "to": ["o@x.org"],
        },
    },
    "blackout": [{"name": "nights", "from": "23:00", "until": "07:00"}],
    "posts_repo": {"url": "git@example.org:c/posts.git", "branch": "main", "every": "60s"},
}
VALUES: list[Any] = [[1], {"a": 1}, [], {}, 1, -1, True, None, 1.5, float("inf"), "", "\x00"]
VALUES += ["x" * 5000, "${NOPE}", 10**30]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, dict | list):
            yield from _leaves(value, (*path, key))
        yield (*path, key)


def test_every_setting_given_every_kind_of_value_is_loaded_or_refused(tmp_path: Path) -> None:
    config = tmp_path / "scheduler.yaml"
    config.write_text(yaml.safe_dump(FULL_CONFIG, allow_unicode=True))
    load_settings(config, environ={"T": "t" * 24})  # the full configuration is valid
    crashes = []
    for path in _leaves(FULL_CONFIG):
        for value in VALUES:
            changed = copy.deepcopy(FULL_CONFIG)
            node = changed
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            config.write_text(yaml.safe_dump(changed, allow_unicode=True))
            try:
                load_settings(config, environ={"T": "t" * 24})
            except ConfigError:
                continue
            except Exception as exc:  # what this test looks for
                crashes.append(f"{'.'.join(map(str, path))} = {value!r:.40}: {exc!r:.200}")
    assert not crashes, "\n".join(crashes)
