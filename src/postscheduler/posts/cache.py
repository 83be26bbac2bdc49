"""The posts folder as last checked, so that a reload re-reads only what changed.

The daemon reloads on every edit, and with thousands of files reading and checking them all
took seconds each time (docs/performance.md). What a file gives is kept while nothing it
depends on changed: its posts, and the findings of the checks that depend only on the file,
the configuration and the images its posts show. A file counts as changed when its inode,
size, mtime or ctime differ, or when the watcher names it or one of its images
(``forget``), since two writes within one clock tick can leave the same stamp. What depends
on the time (expired, in the past) and on the other files (ids used twice) is worked out
afresh on every read.

One cache serves one ``Settings``: a new configuration means a new cache. Given a folder
(``keep``), the files' parses and checks are also kept there for the next run
(``posts.parsed``), the checks under the configuration's fingerprint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from ..config import Settings
from ..errors import Finding
from .images import ImageInfo
from .loader import Catalog, _check_duplicate_ids, load_file, no_posts_dir, post_file_names
from .parsed import ParsedFiles, Stamp, collection_paused
from .rules import check_post_as_written, dated_findings


def _stamp(info: os.stat_result) -> Stamp:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _stamp_of(path: str) -> Stamp | None:
    try:
        return _stamp(Path(path).stat())
    except OSError:
        return None  # missing: an image added later is a change too


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    """One file as read: its posts and findings (``loaded``), the checks of each of its
    posts in order, and the images those checks read with their stamps then."""

    stamp: Stamp | None  # None: never kept (a symlink, a pipe): read again each time
    loaded: Catalog
    checks: tuple[list[Finding], ...]
    images: tuple[tuple[str, Stamp | None], ...]


# A read that checked this many files afresh keeps them for the next run; after one edit,
# checking it again at the next start costs less than writing them all out.
SAVE_AFTER = 100


def fingerprint(settings: Settings) -> str:
    """What a post's checks depend on in ``settings``: the whole configuration as loaded
    (accounts with their limits, defaults, blackouts...: secrets are only references there),
    the file it came from (findings name it) and where the posts are."""
    config = settings.config.model_dump_json(serialize_as_any=True)
    where = (str(settings.path), str(settings.base_dir), str(settings.posts_dir))
    return hashlib.sha256("\0".join((config, *where)).encode()).hexdigest()


class PostCache:
    def __init__(self, settings: Settings, keep: Path | None = None) -> None:
        self.settings = settings
        self.parsed = ParsedFiles(keep)
        self._files: dict[str, _Checked] = {}
        self._lock = threading.Lock()
        self._forgotten: set[str] = set()
        self._fingerprint = fingerprint(settings) if keep is not None else ""
        self.last_read = 0  # files read (not taken from the cache) by the last read
        self.last_parsed = 0  # of them, those parsed (not found in ``parsed``)
        self.last_checked = 0  # and those checked (their checks not found in ``parsed``)

    def forget(self, paths: Iterable[Path | str]) -> None:
        """Read these again next time, and any file whose posts show one of them (an image):
        the watcher's word, safe to give from any thread, even while a read runs."""
        with self._lock:
            self._forgotten.update(str(p) for p in paths)

    def read(self, now: dt.datetime | None) -> Catalog:
        """Every post file under posts_dir, loaded and checked: what ``validate`` gives for
        the whole folder."""
        with collection_paused():
            return self._read(now)

    def _read(self, now: dt.datetime | None) -> Catalog:
        with self._lock:
            forgotten, self._forgotten = self._forgotten, set()
        settings = self.settings
        root = settings.posts_dir
        if not root.is_dir():
            self._files = {}
            catalog = Catalog()
            catalog.findings.append(no_posts_dir(settings, root))
            return catalog
        images_now: dict[str, Stamp | None] = {}  # each image stat'ed once per read

        def unchanged(entry: _Checked | None, stamp: Stamp | None) -> bool:
            if entry is None or stamp is None or entry.stamp != stamp:
                return False
            for path, then in entry.images:
                if path in forgotten:
                    return False
                if path not in images_now:
                    images_now[path] = _stamp_of(path)
                if images_now[path] != then:
                    return False
            return True

        kept: dict[str, _Checked] = {}
        pieces: list[_Checked] = []
        self.last_read = self.last_parsed = self.last_checked = 0
        for name in post_file_names(root):
            try:
                info = os.lstat(name)
            except OSError:
                info = None
            # The stamp is taken before the file is read: a write after it changes the stamp.
            stamp = _stamp(info) if info is not None and stat.S_ISREG(info.st_mode) else None
            entry = None if name in forgotten else self._files.get(name)
            if not unchanged(entry, stamp):
                entry = self._check(name, stamp, root)
                self.last_read += 1
            assert entry is not None
            if entry.stamp is not None:
                kept[name] = entry
            pieces.append(entry)
        self._files = kept
        if self.last_checked >= SAVE_AFTER:
            self.keep()
        return _assemble(pieces, settings, now)

    def keep(self) -> None:
        """Keep the parses of the files as last read for the next run (with ``keep``)."""
        self.parsed.save(self._files)

    def _check(self, name: str, stamp: Stamp | None, root: Path) -> _Checked:
        settings = self.settings
        loaded = Catalog()
        path = Path(name)
        kept = None if stamp is None else self.parsed.get(path, name, stamp)
        doc = load_file(path, settings, loaded, kept)
        if kept is None:
            self.last_parsed += 1
            if doc is not None and stamp is not None:
                self.parsed.put(name, stamp, doc)
        if kept is not None:
            found = self.parsed.checks(path, name, self._fingerprint, len(loaded.posts))
            if found is not None and all(_stamp_of(image) == then for image, then in found[1]):
                return _Checked(stamp, loaded, *found)
        self.last_checked += 1
        seen: dict[str, ImageInfo | str] = {}
        checks = tuple(check_post_as_written(sp, settings, seen) for sp in loaded.posts)
        shown = {str(root / f) for f in seen}
        # An image's error can name what its folder holds ("did you mean photo.jpg?"): the
        # folder's stamp changes when a file is added to it or taken out.
        shown |= {str((root / f).parent) for f, info in seen.items() if isinstance(info, str)}
        images = tuple((image, _stamp_of(image)) for image in sorted(shown))
        if stamp is not None and self.parsed.path is not None:
            self.parsed.put_checks(name, self._fingerprint, checks, images)
        return _Checked(stamp, loaded, checks, images)


def _assemble(pieces: list[_Checked], settings: Settings, now: dt.datetime | None) -> Catalog:
    """One catalog from the files' pieces, in the order ``load_posts`` and ``check_catalog``
    give: what loading found in every file, then the ids used twice, then each post's
    checks. The pieces are left as they are, to be used again."""
    catalog = Catalog()
    id_sites = catalog.id_sites
    for piece in pieces:
        loaded = piece.loaded
        catalog.files.extend(loaded.files)
        catalog.posts.extend(loaded.posts)
        # Most files hold one good post: the rest is mostly empty, and skipped so.
        if loaded.findings:
            catalog.findings.extend(loaded.findings)
        if loaded.blocked_ids:
            catalog.blocked_ids.update(loaded.blocked_ids)
        if loaded.unreadable:
            catalog.unreadable.extend(loaded.unreadable)
        for post_id, sites in loaded.id_sites.items():
            if post_id in id_sites:
                id_sites[post_id].extend(sites)
            else:
                id_sites[post_id] = list(sites)
    _check_duplicate_ids(catalog, settings.base_dir)
    # The posts left once those whose id is used twice are out (None: all of them).
    remaining = None
    if len(catalog.posts) < sum(len(piece.loaded.posts) for piece in pieces):
        remaining = {id(sp) for sp in catalog.posts}
    findings = catalog.findings
    for piece in pieces:
        for sp, found in zip(piece.loaded.posts, piece.checks, strict=True):
            if remaining is not None and id(sp) not in remaining:
                continue  # its id is used twice: blocked, and not checked further
            if found:
                if any(f.is_error for f in found):
                    catalog.blocked_ids.add(sp.id)
                findings.extend(found)
            findings.extend(dated_findings(sp, settings, now))
    return catalog
