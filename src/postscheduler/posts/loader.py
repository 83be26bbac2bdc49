"""Find post files, parse them and build ``Post`` models, collecting findings as it goes.

One bad file never stops the others: each file is read on its own, and each post of a
campaign pack is validated on its own, so a typo in one post blocks only that post.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import Settings
from ..errors import Finding, PostNotFoundError, YamlSourceError, error
from .models import Pack, Post, is_valid_id
from .validation import Loc, doc_path, findings_from_validation_error
from .yamlsource import Document, Mark, read_yaml

POST_SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class SourcedPost:
    """A valid post and where it was written, so later findings can point at it."""

    post: Post
    doc: Document
    base: Loc  # this post's mapping in the document: () or ("posts", i)
    own_keys: frozenset[str]  # keys written in the post itself, not inherited from its pack

    @property
    def id(self) -> str:
        return self.post.id

    @property
    def file(self) -> Path:
        return self.doc.path

    def doc_loc(self, loc: Loc) -> Loc:
        if self.base and loc and loc[0] not in self.own_keys:
            return loc  # inherited from the pack's shared fields
        return self.base + loc

    def mark(self, *loc: str | int, key: bool = False) -> Mark:
        return self.doc.mark_of(self.doc_loc(loc), key=key)

    def where(
        self, *loc: str | int, key: bool = False, account: str | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for a Finding about this post at ``loc``."""
        m = self.mark(*loc, key=key)
        return {
            "file": self.file,
            "line": m.line,
            "column": m.column,
            "post_id": self.id,
            "account": account,
        }


@dataclasses.dataclass
class Catalog:
    """Everything loaded: the valid posts, the findings, and the ids of blocked posts."""

    posts: list[SourcedPost] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    files: list[Path] = dataclasses.field(default_factory=list)
    blocked_ids: set[str] = dataclasses.field(default_factory=set)
    # Files that could not be read as posts at all (a YAML syntax error...): which posts they
    # hold is unknown, so none of the ledger's posts may be taken for deleted meanwhile.
    unreadable: list[Path] = dataclasses.field(default_factory=list)
    # Every id seen, valid post or not, with where it was written: an invalid post still
    # claims its id, or fixing it later would silently collide with another post.
    id_sites: dict[str, list[tuple[Path, Mark]]] = dataclasses.field(default_factory=dict)

    def claim_id(self, post_id: str, file: Path, mark: Mark) -> None:
        self.id_sites.setdefault(post_id, []).append((file, mark))

    def get(self, post_id: str) -> SourcedPost:
        for sp in self.posts:
            if sp.id == post_id:
                return sp
        raise PostNotFoundError(post_id, [sp.id for sp in self.posts] + list(self.blocked_ids))

    def errors_for(self, post_id: str) -> list[Finding]:
        return [f for f in self.findings if f.post_id == post_id and f.is_error]


def iter_post_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Post files under ``paths`` (files or folders), sorted, skipping hidden entries."""
    for path in paths:
        try:
            folder = path.is_dir()
        except OSError:  # a name too long: said as the file's finding (_refused)
            folder = False
        if folder:
            yield from (Path(name) for name in post_file_names(path))
        else:
            yield path


def post_file_names(folder: Path) -> list[str]:
    """The post files in ``folder``, sorted, as strings: a Path for each of thousands of
    files costs more than reading the folder."""
    found: list[str] = []
    for where, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(
            f"{where}{os.sep}{name}"
            for name in files
            if not name.startswith(".") and name.lower().endswith(POST_SUFFIXES)
        )
    return sorted(found)


def _context(settings: Settings) -> dict[str, Any]:
    return {"zone": settings.config.zone}


def _raw_id(data: Any) -> str | None:
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str):
            return value
    return None


def _load_single(doc: Document, data: dict[str, Any], settings: Settings, catalog: Catalog) -> None:
    data = dict(data)
    if "id" not in data:
        stem = doc.path.stem
        if not is_valid_id(stem):
            catalog.findings.append(
                error(
                    "invalid-id",
                    f"the file name {stem!r} cannot serve as the post id",
                    **doc.where(()),
                    hint="add `id:` with 1 to 128 letters, digits, '.', '_' or '-', starting "
                    "with a letter or digit",
                )
            )
            return
        data["id"] = stem
    raw = data["id"]
    if isinstance(raw, str):
        catalog.claim_id(raw, doc.path, doc.mark_of(("id",), key=True))
    # `id: 2027` (quotes dropped in an edit) still holds the post "2027"; `id: [a, b]` names
    # no post, and a finding's post id is a string everywhere it is used.
    post_id = str(raw) if isinstance(raw, str | int | float) else None
    try:
        post = Post.model_validate(data, context=_context(settings))
    except ValidationError as exc:
        catalog.findings.extend(findings_from_validation_error(exc, doc, Post, post_id=post_id))
        if post_id is not None:
            catalog.blocked_ids.add(post_id)
        return
    catalog.posts.append(SourcedPost(post, doc, (), frozenset(data)))


def _load_pack(doc: Document, data: dict[str, Any], settings: Settings, catalog: Catalog) -> None:
    shared = {k: v for k, v in data.items() if k != "posts"}
    entries = data["posts"]
    if "id" in shared or "at" in shared:
        key = "id" if "id" in shared else "at"
        catalog.findings.append(
            error(
                "misplaced-key",
                f"{key!r} belongs to each post under posts:, not to the pack",
                **doc.where((key,), key=True),
                hint=f"move {key}: into each entry of posts:",
            )
        )
        shared.pop("id", None)
        shared.pop("at", None)
    try:
        Pack.model_validate({**shared, "posts": entries}, context=_context(settings))
        shared_ok = True
    except ValidationError as exc:
        # Problems of the shared fields are reported once, not once per post; a non-mapping
        # entry of posts: is reported below, with its position.
        shared_errors = [
            e
            for e in exc.errors(include_url=False)
            if not (e["loc"][:1] == ("posts",) and len(e["loc"]) > 1)
        ]
        catalog.findings.extend(findings_from_validation_error(shared_errors, doc, Pack))
        shared_ok = not shared_errors
    if not isinstance(entries, list):
        return
    for i, entry in enumerate(entries):
        base: Loc = ("posts", i)
        post_id = _raw_id(entry)
        if post_id is not None:
            catalog.claim_id(post_id, doc.path, doc.mark_of((*base, "id"), key=True))
        if not isinstance(entry, dict):
            catalog.findings.append(
                error(
                    "invalid-value",
                    "each entry of posts: must be a mapping with id:, at: and what to publish",
                    **doc.where(base),
                )
            )
            continue
        if not shared_ok:
            if post_id:
                catalog.blocked_ids.add(post_id)
            catalog.findings.append(
                error(
                    "pack-invalid",
                    "not checked further: the shared fields of its pack are invalid",
                    **doc.where(base),
                    post_id=post_id,
                )
            )
            continue
        merged = {**shared, **entry}
        own = frozenset(entry)

        def to_doc(loc: Loc, own: frozenset[str] = own, base: Loc = base) -> Loc:
            if not loc:  # about the post as a whole: its own entry, not the file's top
                return base
            full = base + loc if (loc and loc[0] in own) else loc
            return doc_path(doc.data, full)

        try:
            post = Post.model_validate(merged, context=_context(settings))
        except ValidationError as exc:
            catalog.findings.extend(
                findings_from_validation_error(exc, doc, Post, post_id=post_id, to_doc=to_doc)
            )
            if post_id:
                catalog.blocked_ids.add(post_id)
            continue
        catalog.posts.append(SourcedPost(post, doc, base, own))


def _refused(path: Path, settings: Settings) -> Finding | None:
    """Why ``path`` is not read at all: a FIFO or device would hang the reader, and a symlink
    out of posts_dir would publish (and echo into CI logs) a file nobody reviewed."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            gone, hint = "a symlink to a file that is not there", "point it at a file, or remove it"
        else:
            gone, hint = "no such file", "check the name: post files are .yaml or .yml files"
        return error("not-found", f"{gone}: not read", file=path, hint=hint)
    except OSError as exc:
        return error("unreadable", f"cannot read the file: {exc.strerror}", file=path)
    if not stat.S_ISREG(info.st_mode):
        return error(
            "not-a-file",
            "not a regular file (a pipe, device or folder): not read",
            file=path,
            hint="post files are plain YAML files; remove this entry from posts/",
        )
    if not path.is_symlink():
        return None
    posts_dir = settings.posts_dir  # resolved each time it is asked: only when needed
    if not path.resolve().is_relative_to(posts_dir):
        return error(
            "outside-posts-dir",
            f"a symlink to a file outside {posts_dir.name}/: not read",
            file=path,
            hint=f"copy the file into {posts_dir.name}/ instead of linking to it",
        )
    return None


def load_file(
    path: Path, settings: Settings, catalog: Catalog, parsed: Document | None = None
) -> Document | None:
    """Load one post file into ``catalog``; the parse it went by, if the file could be
    parsed. ``parsed``: the file's parse kept from before (``posts.parsed``), of a regular
    file whose stamp has not changed since."""
    catalog.files.append(path)
    if parsed is not None:
        doc = parsed
    else:
        refused = _refused(path, settings)
        if refused is not None:
            catalog.findings.append(refused)
            catalog.unreadable.append(path)
            return None
        try:
            doc = read_yaml(path)
        except YamlSourceError as exc:
            catalog.findings.append(exc.finding)
            catalog.unreadable.append(path)
            return None
    _load_document(doc, settings, catalog)
    return doc


def _load_document(doc: Document, settings: Settings, catalog: Catalog) -> None:
    path = doc.path
    catalog.findings.extend(_owned(doc, doc.warnings))
    data = doc.data
    if data is None:
        catalog.findings.append(
            error(
                "empty-file",
                "the file is empty: nothing is scheduled from it",
                file=path,
                hint="add a post (see `postscheduler init` for an example) or delete the file",
            )
        )
        return
    if not isinstance(data, dict):
        catalog.unreadable.append(path)
        catalog.findings.append(
            error(
                "not-a-mapping",
                f"a post file must be a mapping of keys (id:, at:, text: ...), not {_kind(data)}",
                **doc.where(()),
            )
        )
        return
    if "posts" in data:
        _load_pack(doc, data, settings, catalog)
    else:
        _load_single(doc, data, settings, catalog)


def _owned(doc: Document, findings: list[Finding]) -> list[Finding]:
    """Findings about a file's text (a swallowed #hashtag) given to the post they are in, so
    queue and preview show them with the post: a single post's file is all that post's; in a
    pack, each entry of ``posts:`` runs to the next (what precedes is shared, and stays the
    file's)."""
    data = doc.data
    if not findings or not isinstance(data, dict):
        return findings
    starts: list[tuple[int, str]] = []
    entries = data.get("posts")
    if isinstance(entries, list):
        for i, entry in enumerate(entries):
            raw = _raw_id(entry)
            if raw is not None:
                starts.append((doc.mark_of(("posts", i)).line, raw))
    else:
        starts.append((1, _raw_id(data) or doc.path.stem))
    owned = []
    for finding in findings:
        if finding.post_id is None and finding.line:
            owners = [post_id for line, post_id in starts if line <= finding.line]
            if owners:
                finding = dataclasses.replace(finding, post_id=owners[-1])
        owned.append(finding)
    return owned


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a single line of text"
    return f"a {type(value).__name__}"


def _same_file(path: Path) -> tuple[object, ...]:
    """What tells two names of one file apart from two files: one stat, where resolve() would
    lstat every folder on the way (the cost of `validate FILES` on thousands of files)."""
    try:
        info = path.stat()
    except OSError:
        return ("unreadable", str(path.absolute()))
    return (info.st_dev, info.st_ino)


def _check_duplicate_ids(
    catalog: Catalog, base_dir: Path, only: set[tuple[object, ...]] | None = None
) -> None:
    """Ids used twice block both posts; ``only``: report just the sites in these files."""
    for post_id, sites in catalog.id_sites.items():
        if len(sites) < 2:
            continue
        if only is not None and not any(_same_file(f) in only for f, _ in sites):
            continue
        catalog.blocked_ids.add(post_id)
        for file, mark in sites:
            if only is not None and _same_file(file) not in only:
                continue
            others = [
                f"{os.path.relpath(f, base_dir)}:{m.line}"
                for f, m in sites
                if (f, m) != (file, mark)
            ]
            catalog.findings.append(
                error(
                    "duplicate-id",
                    f"post id {post_id!r} is also used at {', '.join(others)}",
                    file=file,
                    line=mark.line,
                    column=mark.column,
                    post_id=post_id,
                    hint="ids must be unique across all post files: rename one",
                )
            )
    catalog.posts = [sp for sp in catalog.posts if len(catalog.id_sites.get(sp.id, ())) < 2]


def no_posts_dir(settings: Settings, root: Path) -> Finding:
    return error(
        "no-posts-dir",
        f"posts_dir {root} does not exist",
        file=settings.path,
        hint="create it, or run `postscheduler init`",
    )


def load_posts(settings: Settings, paths: Iterable[Path] | None = None) -> Catalog:
    """Load every post file under ``paths`` (default: the configured posts_dir)."""
    catalog = Catalog()
    if paths is None:
        root = settings.posts_dir
        if not root.is_dir():
            catalog.findings.append(no_posts_dir(settings, root))
            return catalog
        paths = [root]
        for path in iter_post_files(paths):
            load_file(path, settings, catalog)
        _check_duplicate_ids(catalog, settings.base_dir)
        return catalog
    given = list(iter_post_files(paths))
    for path in given:
        load_file(path, settings, catalog)
    # Checking some files still checks their ids against every other file in posts_dir: an
    # id taken elsewhere is a collision the daemon would meet.
    chosen = {_same_file(p) for p in given}
    if settings.posts_dir.is_dir():
        rest = Catalog()
        for path in iter_post_files([settings.posts_dir]):
            if _same_file(path) not in chosen:
                load_file(path, settings, rest)
        for post_id, sites in rest.id_sites.items():
            catalog.id_sites.setdefault(post_id, []).extend(sites)
    _check_duplicate_ids(catalog, settings.base_dir, only=chosen)
    return catalog
