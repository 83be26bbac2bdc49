"""Each post file's parse, kept on disk between runs, so that a daemon restarted with
thousands of files does not parse them all again.

Parsing (with every value's position) is most of what reading a post file costs, and
depends on nothing but the file's bytes and the parser's code: it is kept by the file's
stamp (inode, size, mtime, ctime) in ``<state>/parsed-posts.cache``, written with
``marshal`` (plain values only: nothing in it is ever run), under a key made of the
parser's own source and the Python version. What the parse gives is checked again from
there (the models, the rules): a cache written by another configuration is as good.

A cache that cannot be read (missing, from another version, damaged) is ignored; a
file whose stamp changed is parsed again. Nothing here may fail a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import marshal
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import Finding, Severity
from . import yamlsource
from .yamlsource import Document

log = logging.getLogger("postscheduler")

FILE_NAME = "parsed-posts.cache"
# A file written this recently is not kept: a second write within the file system's clock
# tick could leave the same stamp on other words (git's "racy clean" problem).
RACY_NS = 2_000_000_000
Stamp = tuple[int, int, int, int]
# name -> (stamp, data, value_marks, key_marks, warnings as tuples)
Entry = tuple[Stamp, Any, dict[Any, int], dict[Any, int], tuple[tuple[Any, ...], ...]]


def _key() -> str:
    """What a kept parse was made by: a change to the parser's code or to Python (marshal's
    format) leaves every kept parse unused."""
    try:
        made_by = hashlib.sha256(Path(yamlsource.__file__).read_bytes()).hexdigest()
    except OSError:  # installed without its sources: the release says what the parser is
        made_by = f"postscheduler {__version__}"
    return f"{sys.version}\0{made_by}"


def _finding(f: Finding) -> tuple[Any, ...]:
    return (f.severity.value, f.code, f.message, f.line, f.column, f.post_id, f.account, f.hint)


def _unfinding(t: tuple[Any, ...], path: Path) -> Finding:
    severity, code, message, line, column, post_id, account, hint = t
    return Finding(Severity(severity), code, message, path, line, column, post_id, account, hint)


class ParsedFiles:
    """The parses kept from the last run, and those of this one to keep for the next."""

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
        try:
            key, files = marshal.loads(blob)
        except (ValueError, EOFError, TypeError):
            log.warning("the kept parses in %s are damaged: every post file is read", path)
            return {}
        if key != _key() or not isinstance(files, dict):
            return {}
        return files

    def get(self, path: Path, name: str, stamp: Stamp) -> Document | None:
        """The kept parse of ``path`` (``name`` as a string) if its stamp is still ``stamp``."""
        entry = self._kept.pop(name, None)  # used once: the reads after keep it themselves
        if entry is None:
            return None
        try:  # whatever the file holds, a wrong shape is a parse not kept
            kept_stamp, data, value_marks, key_marks, warnings = entry
            if kept_stamp != stamp or not isinstance(value_marks, dict):
                return None
            if not isinstance(key_marks, dict):
                return None
            found = [_unfinding(w, path) for w in warnings]
        except (TypeError, ValueError):
            return None
        self._new[name] = entry
        return Document(path, data, value_marks, key_marks, found)

    def put(self, name: str, stamp: Stamp, doc: Document) -> None:
        if time.time_ns() - stamp[2] < RACY_NS:
            self._new.pop(name, None)
            return
        warnings = tuple(_finding(w) for w in doc.warnings)
        self._new[name] = (stamp, doc.data, doc.value_marks, doc.key_marks, warnings)

    def save(self, names: Iterable[str]) -> None:
        """Keep the parses of ``names`` (the files there now) for the next run."""
        if self.path is None:
            return
        self._kept = {}  # what is left are files gone since
        self._new = keep = {name: self._new[name] for name in names if name in self._new}
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(marshal.dumps((_key(), keep)))
            tmp.replace(self.path)
        except (OSError, ValueError) as exc:
            log.warning("could not keep the parsed posts in %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
