from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postscheduler.config import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The example campaign (posts/) is dated January 2027: tests that check it as "upcoming" set
# the clock to before it, so they pass whatever the real date is.
BEFORE_THE_EXAMPLES = "2027-01-01T12:00:00Z"
# POSTSCHEDULER_TEST_CLOCK=2027-06-01T12:00:00Z runs a test session with the clock moved
# there (test_clock.py does it), to prove nothing else depends on today's date.
TEST_CLOCK = os.environ.get("POSTSCHEDULER_TEST_CLOCK")
# Third-party test material lives beside the project, never inside it.
SHARED = Path(os.environ.get("POSTSCHEDULER_SHARED", PROJECT_ROOT.parent / "shared"))


def shared_file(relative: str) -> Path:
    """A file from ../shared/interop, or skip the test saying what is missing."""
    path = SHARED / "interop" / relative
    if not path.exists():
        pytest.skip(f"interop material not found: {path} (set POSTSCHEDULER_SHARED to ../shared)")
    return path


def alias_bomb() -> str:
    """A "billion laughs" document: nine levels of nine aliases, 9**9 strings if expanded."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BASE_CONFIG = """\
timezone: Europe/London
posts_dir: posts
accounts:
  outbox: {platform: outbox, path: outbox}
  mastodon: {platform: mastodon, instance: "https://mastodon.example", token: "${MASTODON_TOKEN}"}
  bluesky: {platform: bluesky, handle: campaign.example, app_password: "${BLUESKY_APP_PASSWORD}"}
  x:
    platform: x
    consumer_key: ${X_CONSUMER_KEY}
    consumer_secret: ${X_CONSUMER_SECRET}
    access_token: ${X_ACCESS_TOKEN}
    access_token_secret: ${X_ACCESS_TOKEN_SECRET}
  telegram: {platform: telegram, bot_token: "${TELEGRAM_BOT_TOKEN}", chat_id: "@campaign"}
  slack: {platform: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
defaults:
  accounts: [outbox]
"""


class Project:
    """A scratch project: scheduler.yaml and a posts/ folder under tmp_path."""

    def __init__(self, root: Path, config: str = BASE_CONFIG) -> None:
        self.root = root
        self.posts = root / "posts"
        self.posts.mkdir(parents=True, exist_ok=True)
        (self.posts / "images").mkdir(exist_ok=True)
        self.config_path = root / "scheduler.yaml"
        self.config_path.write_text(config, encoding="utf-8")

    def write(self, name: str, text: str) -> Path:
        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def image(
        self, name: str = "images/photo.jpg", size: tuple[int, int] = (64, 48), fmt: str = "JPEG"
    ) -> Path:
        from PIL import Image

        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 30, 40)).save(path, fmt)
        return path

    def settings(self, environ: dict[str, str] | None = None) -> Settings:
        return load_settings(self.config_path, environ=environ or {})


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[[str], Project]:
    def make(config: str) -> Project:
        return Project(tmp_path, config)

    return make


@pytest.fixture(scope="session")
def bluesky_pds() -> Iterator[Any]:
    """The reference Bluesky server on 127.0.0.1 (installed into build/ on first use)."""
    from .bluesky_pds import UnavailableError, running

    try:
        with running() as pds:
            yield pds
    except UnavailableError as exc:
        pytest.skip(f"the Bluesky PDS cannot run here: {exc}")


def pytest_configure(config: pytest.Config) -> None:
    if TEST_CLOCK:
        import time_machine

        time_machine.travel(TEST_CLOCK, tick=True).start()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server on 127.0.0.1 for the session (tests/postgres_server.py)."""
    from .postgres_server import UnavailableError, running

    try:
        with running() as server:
            yield server
    except UnavailableError as exc:
        if os.environ.get("POSTSCHEDULER_REQUIRE_TOOLS") == "1":
            pytest.fail(f"POSTSCHEDULER_REQUIRE_TOOLS=1 but PostgreSQL cannot run: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def before_the_examples() -> Iterator[None]:
    """The clock set to before the example campaign, still ticking."""
    import time_machine

    with time_machine.travel(BEFORE_THE_EXAMPLES, tick=True):
        yield
