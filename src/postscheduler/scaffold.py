"""``postscheduler init``: a new project with a configuration, a posts folder and an example."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .config import DEFAULT_CONFIG_NAME, embedded_default_text
from .errors import PostschedulerError

SCHEMA_NAME = "post.schema.json"
MODELINE = f"# yaml-language-server: $schema={SCHEMA_NAME}\n"

_EXAMPLE = """{modeline}# One post. `postscheduler preview welcome` shows it as each account will.
id: welcome
at: {at}
text: >-
  We're on the air: follow this account for campaign news, events and ways to help.
link: https://example.org/
# An image always has alt text (what it shows) and a photo credit (who took it):
# image:
#   file: images/banner.jpg
#   alt: Campaigners holding a banner outside the town hall.
#   credit: Jane Doe
"""


def scaffold(directory: Path, schema_text: str, now: dt.datetime) -> tuple[list[Path], list[Path]]:
    """Create the files of a new project under ``directory``; never overwrite one."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        posts = directory / "posts"
        posts.mkdir(exist_ok=True)
        (posts / "images").mkdir(exist_ok=True)
    except OSError as exc:
        raise PostschedulerError(f"cannot create {directory}: {exc.strerror}") from None
    tomorrow = (now + dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    files = {
        directory / DEFAULT_CONFIG_NAME: embedded_default_text(),
        posts / SCHEMA_NAME: schema_text,
        posts / "welcome.yaml": _EXAMPLE.format(
            modeline=MODELINE, at=tomorrow.isoformat(timespec="minutes")
        ),
    }
    created, kept = [], []
    for path, text in files.items():
        if path.exists():
            kept.append(path)
            continue
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise PostschedulerError(f"cannot write {path}: {exc.strerror}") from None
        created.append(path)
    return created, kept
