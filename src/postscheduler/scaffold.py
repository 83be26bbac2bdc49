"""``postscheduler init``: a new project with a configuration, a posts folder and an example."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .config import DEFAULT_CONFIG_NAME, embedded_default_text
from .errors import PostschedulerError, TimeError
from .posts.times import get_zone

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


# What must never be committed: secrets, and the ledger and tokens kept beside it.
_GITIGNORE = """# postscheduler: secrets and local state, never committed
.env
.postscheduler/
outbox/
"""


def local_zone(environ: Mapping[str, str] | None = None) -> str | None:
    """This machine's IANA time zone: ``TZ`` if it names one, else where /etc/localtime
    points; None when neither says."""
    environ = os.environ if environ is None else environ
    candidates = [environ.get("TZ", "").removeprefix(":")]
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if (name and "/" in name) or name == "UTC":
            try:
                get_zone(name)
            except TimeError:
                continue
            return name
    return None


def scaffold(
    directory: Path, schema_text: str, now: dt.datetime, zone: str | None = None
) -> tuple[list[Path], list[Path]]:
    """Create the files of a new project under ``directory``; never overwrite one. ``zone``
    (default: this machine's) is the configuration's time zone."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        posts = directory / "posts"
        posts.mkdir(exist_ok=True)
        (posts / "images").mkdir(exist_ok=True)
    except OSError as exc:
        raise PostschedulerError(f"cannot create {directory}: {exc.strerror}") from None
    tomorrow = (now + dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    config = embedded_default_text()
    zone = zone or local_zone()
    if zone:
        config = re.sub(r"^timezone: \S+", f"timezone: {zone}", config, count=1, flags=re.M)
    files = {
        directory / DEFAULT_CONFIG_NAME: config,
        directory / ".gitignore": _GITIGNORE,
        posts / SCHEMA_NAME: schema_text,
        posts / "welcome.yaml": _EXAMPLE.format(
            modeline=MODELINE, at=tomorrow.isoformat(timespec="minutes")
        ),
    }
    created, kept = [], []
    for path, text in files.items():
        if path.name == ".gitignore" and path.exists():
            text = _missing_ignores(path, text)
            if text:
                _append(path, text)
                created.append(path)
            else:
                kept.append(path)
            continue
        if path.exists():
            kept.append(path)
            continue
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise PostschedulerError(f"cannot write {path}: {exc.strerror}") from None
        created.append(path)
    return created, kept


def _missing_ignores(path: Path, wanted: str) -> str:
    try:
        have = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    except (OSError, UnicodeError):
        return ""
    missing = [
        line
        for line in wanted.splitlines()
        if line and not line.startswith("#") and line not in have
    ]
    return "\n".join(["", "# added by postscheduler init", *missing, ""]) if missing else ""


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise PostschedulerError(f"cannot write {path}: {exc.strerror}") from None
