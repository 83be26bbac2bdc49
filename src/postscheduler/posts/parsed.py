"""Each post file's parse and checks, kept on disk between runs, so that neither a daemon
restarted with thousands of files nor a ``validate`` run again reads and checks them all.

Parsing (with every value's position) and checking each post against each account are
most of what reading a post file costs. The parse depends on nothing but the file's bytes
and the parser's code; the checks that do not depend on the time or on the other files
(``rules.check_post_as_written``) also on the configuration and on the images the posts
show. Both are kept in ``<state>/parsed-posts.cache`` and taken while the file's stamp
(inode, size, mtime, ctime) is the one kept, or, once it changed (a fresh clone, a touch),
while the file's bytes have the digest kept. The cache is written with ``marshal`` (plain
values only: nothing in it is ever run), under a key made of this package's code, the
packages installed beside it and the Python version. The checks also carry the
configuration's fingerprint and each image's stamp: another configuration, or an image
changed, means checking again. The models are built from the kept parse every time, so
the posts are always real models.

A cache that cannot be read (missing, from another version, damaged) is ignored; a
file whose bytes changed is parsed again. Nothing here may fail a run. The file is sealed
with a digest of its contents, checked before anything is taken from it: a kept parse is
what the daemon publishes, so a byte changed on disk must not become a word changed in a
post.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import logging
import marshal
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import Finding, Severity
from . import yamlsource
from .yamlsource import Document

log = logging.getLogger("postscheduler")

FILE_NAME = "parsed-posts.cache"
# Bumped when what an entry holds changes shape.
FORMAT = 2
# The file: this line, the payload's seal, then the payload (marshal's).
_MAGIC = b"postscheduler parsed posts\n"
_SEAL_BYTES = 32


def _seal(payload: bytes | memoryview) -> bytes:
    return hashlib.blake2b(payload, digest_size=_SEAL_BYTES).digest()


# A file written this recently is not kept by its stamp: a second write within the file
# system's clock tick could leave the same stamp on other words (git's "racy clean"
# problem). It is kept by its bytes' digest alone, read again to be matched.
RACY_NS = 2_000_000_000
Stamp = tuple[int, int, int, int]
FindingRow = tuple[Any, ...]
ImageStamps = tuple[tuple[str, Stamp | None], ...]
# The checks of a file's posts: (the configuration's fingerprint, each post's findings in
# order, the images those checks read with their stamps then).
KeptChecks = tuple[str, tuple[tuple[FindingRow, ...], ...], ImageStamps]
# name -> (stamp, digest, data, value_marks, key_marks, warnings as rows, checks or None)
Entry = tuple[
    Stamp, bytes, Any, dict[Any, int], dict[Any, int], tuple[FindingRow, ...], KeptChecks | None
]


@functools.cache
def _key() -> str:
    """What kept entries were made by: this package's code (any of it can change what a
    check finds), the packages installed beside it (twitter-text, Pillow...: their names
    carry their versions) and Python (marshal's format). A change to any leaves every kept
    entry unused. Worked out once: it is the code this process runs."""
    here = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    try:
        for source in sorted(here.rglob("*.py")):
            digest.update(str(source.relative_to(here)).encode())
            digest.update(source.read_bytes())
    except OSError:
        digest.update(b"unreadable")
    installed = sorted(
        name
        for folder in sys.path
        for name in _names(folder)
        if name.endswith((".dist-info", ".egg-info"))
    )
    return "\0".join([sys.version, str(FORMAT), __version__, digest.hexdigest(), *installed])


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while thousands of post files are read: that
    makes hundreds of thousands of containers (values, positions, models), none of them in
    a cycle, and the collector would walk them again each time a few hundred more pile up
    (Mercurial's ``nogc`` does the same for its large reads). Left alone if someone else
    has paused it; a cycle made meanwhile is collected after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _racy(stamp: Stamp) -> bool:
    return time.time_ns() - stamp[2] < RACY_NS


def _holds(path: Path, size: int, digest: bytes) -> bool:
    """Whether ``path`` (``size`` bytes by its stamp) still holds the bytes of ``digest``."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(size + 1)
    except OSError:
        return False
    return len(raw) == size and yamlsource.digest_of(raw) == digest


def _names(folder: str) -> list[str]:
    try:
        return [entry.name for entry in Path(folder).iterdir()]
    except OSError:  # not a folder (a zip), or gone
        return []


def _finding(f: Finding) -> FindingRow:
    return (f.severity.value, f.code, f.message, f.line, f.column, f.post_id, f.account, f.hint)


def _unfinding(t: FindingRow, path: Path | None) -> Finding:
    severity, code, message, line, column, post_id, account, hint = t
    return Finding(Severity(severity), code, message, path, line, column, post_id, account, hint)


def _check_row(f: Finding, name: str) -> FindingRow:
    """A check's finding with its file: None for the post file ``name`` itself (nearly all of
    them), "" for none."""
    file = "" if f.file is None else str(f.file)
    return (None if file == name else file, *_finding(f))


def _uncheck_row(row: FindingRow, path: Path) -> Finding:
    file, *rest = row
    return _unfinding(tuple(rest), path if file is None else Path(file) if file else None)


class ParsedFiles:
    """The entries kept from the last run, and those of this one to keep for the next."""

    def __init__(self, folder: Path | None) -> None:
        self.path = None if folder is None else folder / FILE_NAME
        self._kept: dict[str, Entry] = {}
        self._new: dict[str, Entry] = {}
        if self.path is not None:
            self._kept = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict[str, Entry]:
        try:
            blob = path.read_bytes()
        except OSError:
            return {}
        if not blob.startswith(_MAGIC):
            return {}  # another version's, or not ours: nothing to say
        head = len(_MAGIC) + _SEAL_BYTES
        seal, payload = blob[len(_MAGIC) : head], memoryview(blob)[head:]
        try:
            # A byte gone wrong on disk can still unmarshal, to a post's text with a typo
            # in it that the daemon would publish: the seal is checked first.
            if seal != _seal(payload):
                raise ValueError("its seal does not match")
            with collection_paused():
                key, files = marshal.loads(payload)
        except (ValueError, EOFError, TypeError):
            log.warning("the kept parses in %s are damaged: every post file is read", path)
            return {}
        if key != _key() or not isinstance(files, dict):
            return {}
        return files

    def get(self, path: Path, name: str, stamp: Stamp) -> Document | None:
        """The kept parse of ``path`` (``name`` as a string) if its stamp is still ``stamp``,
        or its bytes are still those parsed."""
        entry = self._kept.pop(name, None)  # used once: the reads after keep it themselves
        if entry is None:
            return None
        try:  # whatever the file holds, a wrong shape is a parse not kept
            kept_stamp, digest, data, value_marks, key_marks, warnings, _ = entry
            if not isinstance(value_marks, dict) or not isinstance(key_marks, dict):
                return None
            if kept_stamp != stamp:
                if kept_stamp[1] != stamp[1] or not _holds(path, stamp[1], digest):
                    return None
                if not _racy(stamp):  # else matched by its bytes again next time
                    entry = (stamp, *entry[1:])
            found = [_unfinding(w, path) for w in warnings]
        except (TypeError, ValueError, IndexError):
            return None
        self._new[name] = entry
        return Document(path, data, value_marks, key_marks, found, digest)

    def checks(
        self, path: Path, name: str, fingerprint: str, posts: int
    ) -> tuple[tuple[list[Finding], ...], ImageStamps] | None:
        """The kept checks of the ``posts`` posts of the file just taken by ``get``, if
        they were made under the configuration ``fingerprint``; the caller compares the
        images' stamps."""
        entry = self._new.get(name)
        if entry is None or entry[6] is None:
            return None
        try:
            kept_by, checks, images = entry[6]
            if kept_by != fingerprint or len(checks) != posts:
                return None
            found = tuple([_uncheck_row(row, path) for row in rows] for rows in checks)
            for image, stamp in images:
                if not isinstance(image, str) or not (stamp is None or len(stamp) == 4):
                    return None
        except (TypeError, ValueError):
            return None
        return found, images

    def put(self, name: str, stamp: Stamp, doc: Document) -> None:
        if not doc.digest:
            self._new.pop(name, None)
            return
        if _racy(stamp):  # a stamp no file has, of the file's size: matched by its bytes
            stamp = (-1, stamp[1], 0, 0)
        warnings = tuple(_finding(w) for w in doc.warnings)
        self._new[name] = (
            stamp,
            doc.digest,
            doc.data,
            doc.value_marks,
            doc.key_marks,
            warnings,
            None,
        )

    def put_checks(
        self,
        name: str,
        fingerprint: str,
        checks: tuple[list[Finding], ...],
        images: ImageStamps,
    ) -> None:
        """Keep the checks just made of the file ``name`` whose parse is kept (``get`` or
        ``put``): none for a file not kept."""
        entry = self._new.get(name)
        if entry is not None:
            rows = tuple(tuple(_check_row(f, name) for f in found) for found in checks)
            self._new[name] = (*entry[:6], (fingerprint, rows, images))

    def save(self, names: Iterable[str]) -> None:
        """Keep the parses of ``names`` (the files there now) for the next run."""
        if self.path is None:
            return
        self._kept = {}  # what is left are files gone since
        self._new = keep = {name: self._new[name] for name in names if name in self._new}
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = marshal.dumps((_key(), keep))
            tmp.write_bytes(b"".join((_MAGIC, _seal(payload), payload)))
            tmp.replace(self.path)
        except (OSError, ValueError) as exc:
            log.warning(
                "could not keep the parsed posts in %s (the next run reads and checks every "
                "file again): %s",
                self.path,
                exc,
            )
            with contextlib.suppress(OSError):
                tmp.unlink()
