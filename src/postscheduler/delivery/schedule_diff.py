"""``diff BASE [HEAD]``: what a change does to the schedule, for the pull request's review.

Both sides are read as the daemon would read them, with the working tree's configuration
(the accounts live on the server, not in the pull request): the posts folder at git revision
BASE (``git archive``, so nothing in the working tree is touched) against HEAD's, or the
working tree when HEAD is not given. Posts are matched by id: added, removed, moved (old →
new time), edited (per account, the final text before and after, as render gives it), and
validation errors that the change brings, each with file:line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config import Settings
from ..errors import Finding, PostschedulerError
from ..posts.cache import PostCache
from ..posts.loader import Catalog
from ..posts.render import render_post, target_accounts
from ..posts.rules import validate


class DiffError(PostschedulerError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Edit:
    account: str
    before: tuple[str, ...]  # each part's final text
    after: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class PostChange:
    kind: str  # added, removed, moved, edited
    post_id: str
    where: str  # file:line on the side it is on (HEAD's, or BASE's for a removal)
    before: dt.datetime | None = None  # its time at BASE
    after: dt.datetime | None = None  # its time at HEAD
    edits: tuple[Edit, ...] = ()
    held: bool = False  # at HEAD its file has errors: it will not be sent as it is


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleDiff:
    base: str
    head: str
    changes: tuple[PostChange, ...]
    new_errors: tuple[Finding, ...]  # with files relative to the repository

    @property
    def empty(self) -> bool:
        return not (self.changes or self.new_errors)


def _git(repo: Path, *args: str) -> bytes:
    git = shutil.which("git")
    if git is None:
        raise DiffError("diff needs the git command-line tool: install git")
    done = subprocess.run(
        [git, "-C", str(repo), *args], capture_output=True, timeout=120, check=False
    )
    if done.returncode != 0:
        words = done.stderr.decode(errors="replace").strip().splitlines()
        raise DiffError(f"git {args[0]}: " + (words[-1] if words else "failed"))
    return done.stdout


@contextmanager
def _posts_at(repo: Path, revision: str, posts: Path) -> Iterator[Path]:
    """The posts folder as it is at ``revision``, in a scratch folder."""
    _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="postscheduler-diff-") as tmp:
        out = Path(tmp)
        try:
            archive = _git(repo, "archive", "--format=tar", revision, "--", str(posts))
        except DiffError:
            archive = b""  # the folder did not exist then: no posts
        if archive:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(out, filter="data")  # no links out, no devices
        yield out / posts


def _catalog(settings: Settings, folder: Path, now: dt.datetime) -> tuple[Settings, Catalog]:
    config = settings.config.model_copy(update={"posts_dir": str(folder), "posts_repo": None})
    side = dataclasses.replace(settings, config=config)
    folder.mkdir(parents=True, exist_ok=True)
    # A scratch folder, gone afterwards: nothing read there is worth keeping.
    return side, validate(side, now=now, cache=PostCache(side))


def _texts(settings: Settings, catalog: Catalog) -> dict[str, dict[str, tuple[str, ...]]]:
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for sp in catalog.posts:
        accounts = [a for a in target_accounts(sp.post, settings) if a in settings.config.accounts]
        out[sp.id] = {
            a: tuple(p.text for p in render_post(sp.post, a, settings).parts) for a in accounts
        }
    return out


def schedule_diff(
    settings: Settings, base: str, head: str | None = None, *, now: dt.datetime
) -> ScheduleDiff:
    posts_dir = settings.posts_dir
    try:
        top = Path(_git(posts_dir, "rev-parse", "--show-toplevel").decode().strip())
    except DiffError as exc:
        raise DiffError(f"{posts_dir} is not in a git repository ({exc})") from None
    rel = posts_dir.resolve().relative_to(top.resolve())

    def where(catalog: Catalog, folder: Path, post_id: str) -> str:
        for file, mark in catalog.id_sites.get(post_id, []):
            shown = rel / file.relative_to(folder) if file.is_relative_to(folder) else file
            return f"{shown}:{mark.line}"
        return ""

    def located(finding: Finding, folder: Path) -> Finding:
        file = finding.file
        if file is not None and file.is_relative_to(folder):
            return dataclasses.replace(finding, file=rel / file.relative_to(folder))
        return finding

    with _posts_at(top, base, rel) as base_dir:
        base_settings, before = _catalog(settings, base_dir, now)
        base_texts = _texts(base_settings, before)
        base_where = {i: where(before, base_dir, i) for i in before.id_sites}
        base_times = {sp.id: sp.post.at for sp in before.posts}
        base_errors = {
            (f.post_id, f.code, f.message, f.account) for f in before.findings if f.is_error
        }
        with _head(top, head, rel, posts_dir) as head_dir:
            head_settings, after = _catalog(settings, head_dir, now)
            head_texts = _texts(head_settings, after)
            head_times = {sp.id: sp.post.at for sp in after.posts}
            changes: list[PostChange] = []
            ids_before = set(before.id_sites)
            ids_after = set(after.id_sites)
            for post_id in sorted(ids_after - ids_before):
                changes.append(
                    PostChange(
                        "added",
                        post_id,
                        where(after, head_dir, post_id),
                        after=head_times.get(post_id),
                        held=post_id in after.blocked_ids,
                    )
                )
            for post_id in sorted(ids_before - ids_after):
                changes.append(
                    PostChange(
                        "removed",
                        post_id,
                        base_where.get(post_id, ""),
                        before=base_times.get(post_id),
                    )
                )
            for post_id in sorted(ids_before & ids_after):
                old, new = base_times.get(post_id), head_times.get(post_id)
                spot = where(after, head_dir, post_id)
                if old != new and old is not None and new is not None:
                    changes.append(PostChange("moved", post_id, spot, old, new))
                edits = tuple(
                    Edit(a, base_texts.get(post_id, {}).get(a, ()), texts)
                    for a, texts in head_texts.get(post_id, {}).items()
                    if base_texts.get(post_id, {}).get(a, ()) != texts and post_id in base_texts
                )
                if edits:
                    changes.append(PostChange("edited", post_id, spot, old, new, edits))
            new_errors = tuple(
                located(f, head_dir)
                for f in after.findings
                if f.is_error and (f.post_id, f.code, f.message, f.account) not in base_errors
            )
    return ScheduleDiff(base, head or "the working tree", tuple(changes), new_errors)


@contextmanager
def _head(top: Path, head: str | None, rel: Path, posts_dir: Path) -> Iterator[Path]:
    if head is None:
        yield posts_dir
        return
    with _posts_at(top, head, rel) as folder:
        yield folder


def _when(value: dt.datetime | None, zone: dt.tzinfo) -> str:
    return value.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z") if value else "no time"


def as_data(diff: ScheduleDiff) -> dict[str, object]:
    return {
        "base": diff.base,
        "head": diff.head,
        "changes": [
            {
                "kind": c.kind,
                "post_id": c.post_id,
                "where": c.where,
                "before": c.before.isoformat() if c.before else None,
                "after": c.after.isoformat() if c.after else None,
                "held": c.held,
                "edits": [
                    {"account": e.account, "before": list(e.before), "after": list(e.after)}
                    for e in c.edits
                ],
            }
            for c in diff.changes
        ],
        "new_errors": [
            {
                "where": f.location(),
                "post_id": f.post_id,
                "account": f.account,
                "code": f.code,
                "message": f.message,
            }
            for f in diff.new_errors
        ],
    }


def as_text(diff: ScheduleDiff, zone: dt.tzinfo) -> str:
    if diff.empty:
        return f"{diff.base} → {diff.head}: the schedule does not change\n"
    lines = [f"{diff.base} → {diff.head}:"]
    for c in diff.changes:
        if c.kind == "added" and c.held:
            lines.append(f"+ added   {c.post_id}, held: its file has errors ({c.where})")
        elif c.kind == "added":
            lines.append(f"+ added   {c.post_id} at {_when(c.after, zone)} ({c.where})")
        elif c.kind == "removed":
            lines.append(f"- removed {c.post_id}, was at {_when(c.before, zone)} ({c.where})")
        elif c.kind == "moved":
            lines.append(
                f"~ moved   {c.post_id}: {_when(c.before, zone)} → {_when(c.after, zone)} "
                f"({c.where})"
            )
        else:
            lines.append(f"~ edited  {c.post_id} ({c.where})")
            for e in c.edits:
                for n, (old, new) in enumerate(_pairs(e), start=1):
                    lines.append(f"    {e.account} part {n}:")
                    lines += [f"      - {line}" for line in old.splitlines() or ["(none)"]]
                    lines += [f"      + {line}" for line in new.splitlines() or ["(none)"]]
    for f in diff.new_errors:
        lines.append(
            f"! error   {f.location()}: {f.message}" + (f" ({f.post_id})" if f.post_id else "")
        )
    return "\n".join(lines) + "\n"


def _pairs(edit: Edit) -> list[tuple[str, str]]:
    n = max(len(edit.before), len(edit.after))
    pad = ("",) * n
    return [
        (old, new)
        for old, new in zip((*edit.before, *pad)[:n], (*edit.after, *pad)[:n], strict=True)
        if old != new
    ]


def _md(text: str) -> str:
    """Plain text in markdown: nothing a post says becomes markup or a mention."""
    escaped = text.replace("\\", "\\\\")
    for ch in "`*_[]<>#|@!~":
        escaped = escaped.replace(ch, "\\" + ch)
    return escaped


def _fenced(text: str) -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}diff\n{text}\n{fence}"


def as_markdown(diff: ScheduleDiff, zone: dt.tzinfo) -> str:
    """For a pull-request comment."""
    out = [f"### Schedule changes: `{diff.base}` → {_md(diff.head)}", ""]
    if diff.empty:
        return "\n".join([*out, "The schedule does not change."]) + "\n"
    rows = []
    for c in diff.changes:
        if c.kind == "added" and c.held:
            what = "added, **held**: its file has errors"
        elif c.kind == "added":
            what = f"added, at {_when(c.after, zone)}"
        elif c.kind == "removed":
            what = f"removed (was at {_when(c.before, zone)})"
        elif c.kind == "moved":
            what = f"moved: {_when(c.before, zone)} → **{_when(c.after, zone)}**"
        else:
            what = "edited: " + ", ".join(_md(e.account) for e in c.edits)
        rows.append(f"| {_md(c.post_id)} | {what} | `{c.where}` |")
    if rows:
        out += ["| post | change | where |", "|---|---|---|", *rows, ""]
    for c in diff.changes:
        for e in c.edits:
            body = "\n".join(
                "\n".join(
                    [*(f"- {x}" for x in old.splitlines()), *(f"+ {x}" for x in new.splitlines())]
                )
                for old, new in _pairs(e)
            )
            out += [
                f"<details><summary>{_md(c.post_id)} on {_md(e.account)}</summary>",
                "",
                _fenced(body),
                "",
                "</details>",
                "",
            ]
    if diff.new_errors:
        out += ["**New validation errors** (these posts will be held):", ""]
        out += [f"- `{f.location()}`: {_md(f.message)}" for f in diff.new_errors]
    return "\n".join(out).rstrip() + "\n"
