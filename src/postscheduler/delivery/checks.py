"""``validate``: every check of the post files, as the CLI and the daemon run them.

The offline rules (``posts.rules``) run always; ``online`` adds what only the platforms can
say (``online.py``); and when a ledger exists, a post edited after it was published is
reported, since the change will not go out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from ..config import Settings
from ..errors import Finding
from ..posts.cache import PostCache
from ..posts.loader import Catalog
from ..posts.rules import validate


@dataclasses.dataclass(frozen=True, slots=True)
class Validation:
    catalog: Catalog
    findings: tuple[Finding, ...]  # in file, line and column order

    @property
    def errors(self) -> int:
        return sum(f.is_error for f in self.findings)

    @property
    def warnings(self) -> int:
        return len(self.findings) - self.errors

    @property
    def blocked(self) -> int:
        """Posts that will not go out until their errors are fixed (those that could not even
        be read as posts included)."""
        return len(self.catalog.blocked_ids)

    @property
    def ready(self) -> int:
        """Posts with no error: they go out as they are."""
        return sum(sp.id not in self.catalog.blocked_ids for sp in self.catalog.posts)


def validate_posts(
    settings: Settings,
    paths: list[Path] | None = None,
    *,
    now: dt.datetime,
    online: bool = False,
    against_ledger: bool = True,
    cache: PostCache | None = None,
) -> Validation:
    """Check ``paths`` (default: the whole posts folder).

    ``against_ledger``: also warn about posts edited after they were published (the daemon
    leaves it to planning, which says the same in its log). ``cache``: see ``PostCache``.
    """
    if online:
        import asyncio

        from .online import served_images, unresolved_mentions, with_online_limits

        settings = asyncio.run(with_online_limits(settings))
        catalog = validate(settings, paths, now=now)
        catalog.findings.extend(asyncio.run(unresolved_mentions(catalog, settings)))
        catalog.findings.extend(asyncio.run(served_images(catalog, settings)))
    else:
        catalog = validate(settings, paths, now=now, cache=cache)
    if against_ledger and settings.ledger_exists():  # what was already published, if any
        from ..ledger import open_ledger
        from .plan import edits_after_publishing

        with open_ledger(settings.config.ledger, settings.base_dir) as ledger:
            catalog.findings.extend(edits_after_publishing(catalog, settings, ledger))
    ordered = sorted(catalog.findings, key=lambda f: (str(f.file or ""), f.line, f.column))
    return Validation(catalog, tuple(ordered))


def posts_to_publish(
    settings: Settings, now: dt.datetime, cache: PostCache | None = None
) -> Catalog:
    """The checked posts the daemon, ``run --once`` and ``publish --now`` plan from: the
    checks of ``validate``, offline (planning reports edits after publishing itself)."""
    return validate_posts(settings, now=now, against_ledger=False, cache=cache).catalog
