"""Reloads re-read only what changed, and end where reading everything again would.

The daemon keeps a ``PostCache`` and its engine plans only the posts new, changed or gone
since its last plan. Each test here holds that against the slow, obvious way: a fresh
``validate`` of the whole folder, and a full plan into a ledger of its own.
"""

from __future__ import annotations

import datetime as dt
import marshal
import os
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from postscheduler.delivery.engine import Engine
from postscheduler.ledger.sqlite import SqliteLedger
from postscheduler.posts.cache import PostCache
from postscheduler.posts.rules import validate

from .conftest import Project
from .test_engine import CONFIG

NOW = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def project(make_project: Callable[[str], Project]) -> Project:
    return make_project(CONFIG)


def _summary(catalog: Any) -> dict[str, Any]:
    return {
        "posts": [(sp.id, sp.post.model_dump_json()) for sp in catalog.posts],
        "findings": [f.as_text() for f in catalog.findings],
        "files": [str(p) for p in catalog.files],
        "blocked": sorted(catalog.blocked_ids),
        "unreadable": [str(p) for p in catalog.unreadable],
    }


def _rows(ledger: SqliteLedger) -> list[tuple[Any, ...]]:
    return [
        (r.key, r.state, r.due_at, r.content_hash, r.reason)
        for r in sorted(ledger.deliveries(), key=lambda r: r.key)
    ]


def _random_post(rng: random.Random, post_id: str, minute: int) -> str:
    """A post file: mostly good, sometimes with an error, a draft, a thread or an image."""
    at = (NOW + dt.timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M")
    accounts = rng.choice(["", "accounts: [a]\n", "accounts: [a, b]\n", "accounts: [nobody]\n"])
    body = rng.choice(
        [
            "text: Hello.\n",
            f"text: Words {rng.randint(0, 3)}.\n",
            "text: A thread.\nthread:\n  - Second part.\n  - Third part.\n",
            "txt: a typo\n",
            "status: draft\ntext: Not yet.\n",
            "text: With a photo.\nimage: {file: images/photo.png, alt: A march., credit: Ana}\n",
        ]
    )
    if rng.random() < 0.1:
        return f"id: {post_id}\nat: {at}\ntext: 'unclosed\n"  # not YAML at all
    return f"id: {post_id}\nat: {at}\n{accounts}{body}"


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_end_where_reading_everything_again_does(project: Project, seed: int) -> None:
    rng = random.Random(seed)
    settings = project.settings()
    cache = PostCache(settings)
    kept = Engine(settings, SqliteLedger(project.root / "kept.db"), clock=lambda: NOW)
    names = [f"p{i}.yaml" for i in range(8)]
    for step in range(40):
        name = rng.choice(names)
        path = project.posts / name
        what = rng.random()
        if what < 0.15 and path.exists():
            path.unlink()
        elif what < 0.25:
            # An id another file may hold too: both are blocked while it lasts.
            project.write(name, _random_post(rng, "shared", rng.randint(-90, 90)))
        elif what < 0.32:
            photo = project.posts / "images" / "photo.png"
            if photo.exists():
                photo.unlink()
            else:
                project.image("images/photo.png", fmt="PNG")
            cache.forget([photo])
        else:
            project.write(name, _random_post(rng, path.stem, rng.randint(-90, 90)))
        if rng.random() < 0.5:
            cache.forget([path])  # the watcher names most changes; the stamps catch the rest
        now = NOW + dt.timedelta(minutes=step)
        got = cache.read(now)
        fresh = validate(settings, None, now, cache=PostCache(settings))
        assert _summary(got) == _summary(fresh), f"step {step}"
        # The same plan as a full one, into a ledger of its own that starts afresh each time.
        kept.clock = lambda now=now: now
        kept.load(got)
        full_path = project.root / f"full-{step}.db"
        if step:
            full_path.write_bytes((project.root / f"full-{step - 1}.db").read_bytes())
        full = Engine(settings, SqliteLedger(full_path), clock=lambda now=now: now)
        full.load(fresh)
        assert _rows(kept.ledger) == _rows(full.ledger), f"step {step}"  # type: ignore[arg-type]
        full.ledger.close()


def test_a_reload_reads_only_the_files_that_changed(project: Project) -> None:
    for i in range(20):
        project.write(f"p{i}.yaml", f"id: p{i}\nat: 2027-02-01 09:00\ntext: Post {i}.\n")
    cache = PostCache(project.settings())
    assert len(cache.read(NOW).posts) == 20 and cache.last_read == 20
    cache.read(NOW)
    assert cache.last_read == 0
    project.write("p3.yaml", "id: p3\nat: 2027-02-01 09:00\ntext: Edited.\n")
    catalog = cache.read(NOW)
    assert cache.last_read == 1
    assert [sp.post.text for sp in catalog.posts if sp.id == "p3"] == ["Edited."]


def test_a_rewrite_the_stamps_cannot_see_is_read_once_the_watcher_names_it(
    project: Project,
) -> None:
    path = project.write("p.yaml", "id: p\nat: 2027-02-01 09:00\ntext: One.\n")
    cache = PostCache(project.settings())
    cache.read(NOW)
    before = path.stat()
    path.write_text("id: p\nat: 2027-02-01 09:00\ntext: Two.\n")  # the same size
    # Within one tick of the file system's clock, the stamp would not change: as if so.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    cache.forget([path])
    assert [sp.post.text for sp in cache.read(NOW).posts] == ["Two."]


def test_an_image_replaced_under_an_unchanged_post_is_checked_again(project: Project) -> None:
    project.image("images/photo.png", fmt="PNG")
    project.write(
        "p.yaml",
        "id: p\nat: 2027-02-01 09:00\ntext: Photo.\n"
        "image: {file: images/photo.png, alt: A march., credit: Ana}\n",
    )
    cache = PostCache(project.settings())
    assert cache.read(NOW).blocked_ids == set()
    (project.posts / "images" / "photo.png").write_bytes(b"not an image at all")
    catalog = cache.read(NOW)  # no forget(): the image's stamp changed
    assert catalog.blocked_ids == {"p"}
    assert [f.code for f in catalog.findings] == ["image-invalid"]
    (project.posts / "images" / "photo.png").unlink()
    assert [f.code for f in cache.read(NOW).findings] == ["image-invalid"]
    project.image("images/photo.png", fmt="PNG")  # added back: the post goes out again
    assert cache.read(NOW).blocked_ids == set()


def test_the_time_is_worked_out_afresh_on_every_read(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: Soon.\n")
    cache = PostCache(project.settings())
    assert cache.read(NOW).findings == []
    later = cache.read(NOW + dt.timedelta(hours=2))
    assert cache.last_read == 0
    assert [f.code for f in later.findings] == ["in-the-past"]


def test_an_id_taken_by_a_new_file_blocks_both_and_the_old_one_comes_back(
    project: Project,
) -> None:
    project.write("a.yaml", "id: p\nat: 2027-02-01 09:00\ntext: First.\n")
    cache = PostCache(project.settings())
    assert [sp.id for sp in cache.read(NOW).posts] == ["p"]
    project.write("b.yaml", "id: p\nat: 2027-02-01 10:00\ntext: Second.\n")
    catalog = cache.read(NOW)
    assert catalog.posts == [] and catalog.blocked_ids == {"p"}
    assert [f.code for f in catalog.findings] == ["duplicate-id", "duplicate-id"]
    (project.posts / "b.yaml").unlink()
    assert [sp.post.text for sp in cache.read(NOW).posts] == ["First."]
    assert cache.last_read == 0


def test_an_edit_plans_only_its_post_and_a_deletion_cancels_what_was_planned(
    project: Project,
) -> None:
    for i in range(5):
        project.write(f"p{i}.yaml", f"id: p{i}\nat: 2027-02-01 09:00\ntext: Post {i}.\n")
    settings = project.settings()
    cache = PostCache(settings)
    engine = Engine(settings, SqliteLedger(project.root / "ledger.db"), clock=lambda: NOW)
    first = engine.load(cache.read(NOW))
    assert first.touched is None and first.planned == 5  # the first plan: everything
    project.write("p2.yaml", "id: p2\nat: 2027-02-01 09:00\naccounts: [a, b]\ntext: Two.\n")
    (project.posts / "p4.yaml").unlink()
    result = engine.load(cache.read(NOW))
    assert result.touched == {"p2", "p4"} and result.planned == 2
    states = {(r.key.post_id, r.key.account): (r.state.value, r.reason) for r in _all(engine)}
    assert states[("p2", "outbox")] == ("skipped", "deleted")  # the account left the post
    assert states[("p2", "a")] == states[("p2", "b")] == ("planned", None)
    assert states[("p4", "outbox")] == ("skipped", "deleted")
    assert engine.load(cache.read(NOW)).touched == frozenset()


def test_a_post_held_by_an_error_then_deleted_is_cancelled(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-02-01 09:00\ntext: One.\n")
    settings = project.settings()
    cache = PostCache(settings)
    engine = Engine(settings, SqliteLedger(project.root / "ledger.db"), clock=lambda: NOW)
    engine.load(cache.read(NOW))
    project.write("p.yaml", "id: p\nat: 2027-02-01 09:00\ntxt: typo\n")
    engine.load(cache.read(NOW))
    assert [r.state.value for r in _all(engine)] == ["planned"]  # held, not cancelled
    (project.posts / "p.yaml").unlink()
    engine.load(cache.read(NOW))
    assert [(r.state.value, r.reason) for r in _all(engine)] == [("skipped", "deleted")]


def _all(engine: Engine) -> list[Any]:
    return sorted(engine.ledger.deliveries(), key=lambda r: r.key)


@pytest.fixture
def keep_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep parses after any read, and of files however new (the tests write them just
    before reading them)."""
    from postscheduler.posts import cache, parsed

    monkeypatch.setattr(cache, "SAVE_AFTER", 1)
    monkeypatch.setattr(parsed, "RACY_NS", 0)


@pytest.mark.usefixtures("keep_at_once")
def test_a_restart_parses_only_the_files_changed_since(project: Project) -> None:
    project.write("a.yaml", "id: a\nat: 2027-02-01 09:00\ntext: Join us #Peru\n")  # a warning
    project.write("b.yaml", "id: b\nat: 2027-02-01 09:00\ntxt: a typo\n")  # an error
    project.write("c.yaml", "id: c\nat: 2027-02-01 09:00\ntext: Fine.\n")
    settings = project.settings()
    state = project.root / "state"
    first = PostCache(settings, keep=state).read(NOW)
    assert (state / "parsed-posts.cache").is_file()
    project.write("c.yaml", "id: c\nat: 2027-02-01 10:00\ntext: Edited while stopped.\n")
    again = PostCache(settings, keep=state)
    catalog = again.read(NOW)
    assert (again.last_read, again.last_parsed) == (3, 1)  # all checked, one parsed
    assert _summary(catalog) == _summary(validate(settings, None, NOW))
    assert [f.code for f in catalog.findings] == [f.code for f in first.findings]
    assert "hashtag-is-comment" in [f.code for f in catalog.findings]


@pytest.mark.usefixtures("keep_at_once")
def test_kept_parses_that_cannot_be_used_are_ignored(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from postscheduler.posts import parsed

    project.write("a.yaml", "id: a\nat: 2027-02-01 09:00\ntext: One.\n")
    settings = project.settings()
    state = project.root / "state"
    PostCache(settings, keep=state).read(NOW)
    kept = state / "parsed-posts.cache"
    good = kept.read_bytes()
    kept.write_bytes(good[: len(good) // 2])  # cut off: a disk full, a crash mid-write
    cache = PostCache(settings, keep=state)
    assert [sp.id for sp in cache.read(NOW).posts] == ["a"] and cache.last_parsed == 1
    assert "damaged" in caplog.text
    caplog.clear()
    assert good.count(b"One.") == 1
    kept.write_bytes(good.replace(b"One.", b"0ne."))  # one byte gone wrong: still marshal's
    cache = PostCache(settings, keep=state)
    (post,) = cache.read(NOW).posts
    assert post.post.text == "One." and cache.last_parsed == 1
    assert "damaged" in caplog.text
    name = str(project.posts.resolve() / "a.yaml")
    wrong = marshal.dumps((parsed._key(), {name: 5}))  # readable and sealed, the wrong shape
    kept.write_bytes(parsed._MAGIC + parsed._seal(wrong) + wrong)
    cache = PostCache(settings, keep=state)
    assert [sp.id for sp in cache.read(NOW).posts] == ["a"] and cache.last_parsed == 1
    caplog.clear()
    unsealed = good[len(parsed._MAGIC) + parsed._SEAL_BYTES :]  # an older version's file
    assert marshal.loads(unsealed)[0] == parsed._key()  # whose entries would still fit
    kept.write_bytes(unsealed)
    cache = PostCache(settings, keep=state)
    assert [sp.id for sp in cache.read(NOW).posts] == ["a"] and cache.last_parsed == 1
    assert "damaged" not in caplog.text  # not damaged: another format, ignored without a word
    kept.write_bytes(good)
    monkeypatch.setattr(parsed, "_key", lambda: "a parser changed since")
    cache = PostCache(settings, keep=state)
    assert [sp.id for sp in cache.read(NOW).posts] == ["a"] and cache.last_parsed == 1


def test_a_file_written_a_moment_ago_is_kept_by_its_bytes(project: Project) -> None:
    """Its stamp may not tell a second write within the same clock tick from this one, so
    it is matched by its bytes, read again; a file written long ago, by its stamp."""
    from postscheduler.posts.cache import _stamp
    from postscheduler.posts.parsed import ParsedFiles
    from postscheduler.posts.yamlsource import read_yaml

    new = project.write("a.yaml", "id: a\nat: 2027-02-01 09:00\ntext: Just written.\n")
    old = project.write("b.yaml", "id: b\nat: 2027-02-01 09:00\ntext: Written long ago.\n")
    an_hour_ago = old.stat().st_mtime_ns - 3600 * 10**9
    os.utime(old, ns=(an_hour_ago, an_hour_ago))
    state = project.root / "state"
    stamps = {path: _stamp(path.stat()) for path in (new, old)}
    first = ParsedFiles(state)
    for path, stamp in stamps.items():
        first.put(str(path), stamp, read_yaml(path))
    first.save([str(new), str(old)])
    again = ParsedFiles(state)
    assert all(again.get(path, str(path), stamp) for path, stamp in stamps.items())
    # Rewritten with the same size, as if within the same tick: the same stamps.
    new.write_text("id: a\nat: 2027-02-01 09:00\ntext: Just WRITTEN.\n")
    old.write_text("id: b\nat: 2027-02-01 09:00\ntext: Written long AGO.\n")
    third = ParsedFiles(state)
    assert third.get(new, str(new), stamps[new]) is None  # its bytes differ: parsed again
    kept = third.get(old, str(old), stamps[old])  # trusted by its stamp, as git does
    assert kept is not None and kept.data["text"] == "Written long ago."


@pytest.mark.usefixtures("keep_at_once")
def test_a_fresh_checkout_takes_kept_parses_and_checks_by_the_files_bytes(
    project: Project,
) -> None:
    """New inodes and times (a CI job restoring the state folder into a new clone, a
    `touch`): a file whose bytes are those kept is neither parsed nor checked again."""
    for i in range(3):
        project.write(f"p{i}.yaml", f"id: p{i}\nat: 2027-02-01 09:00\ntext: '#Peru {i}'\n")
    settings = project.settings()
    state = project.root / "state"
    checked = PostCache(settings, keep=state).read(NOW)
    for i in range(3):  # copied anew: another inode, another mtime
        path = project.posts / f"p{i}.yaml"
        data = path.read_bytes() if i else path.read_bytes().replace(b"#Peru 0", b"#Lima 0")
        path.unlink()
        path.write_bytes(data)
    again = PostCache(settings, keep=state)
    catalog = again.read(NOW)
    assert (again.last_read, again.last_parsed, again.last_checked) == (3, 1, 1)
    assert _summary(catalog) == _summary(validate(settings, None, NOW, cache=PostCache(settings)))
    assert len(catalog.findings) == len(checked.findings)


# Configurations a restart may come back with: each changes what some checks find.
_CONFIG_VARIANTS = [
    "",
    "  a: {platform: outbox, path: out-a, max_characters: 12}\n",
    "blackout:\n  - {name: mourning, from: 2027-01-14, until: 2027-01-16, action: refuse}\n",
]


def _configure(project: Project, variant: str) -> None:
    text = CONFIG
    if variant.startswith("  a:"):
        text = text.replace("  a: {platform: outbox, path: out-a}\n", variant)
    else:
        text += variant
    project.config_path.write_text(text)


@pytest.mark.parametrize("seed", range(4))
def test_restarts_with_kept_checks_end_where_reading_everything_again_does(
    project: Project, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Each step is a new process: a cache that keeps its parses and checks in ``state``
    and begins from what the step before kept, through edits of the posts, of the image
    they show and of the configuration."""
    from postscheduler.posts import cache as cache_module

    monkeypatch.setattr(cache_module, "SAVE_AFTER", 1)
    rng = random.Random(seed)
    state = project.root / "state"
    names = [f"p{i}.yaml" for i in range(8)]
    written = iter(range(time.time_ns() - 10**12, time.time_ns()))

    def aged(path: os.PathLike[str]) -> None:
        # Old enough to be kept, and each write with a stamp of its own: two writes within
        # one tick of the file system's clock are the watcher's to report (tested above).
        ns = next(written)
        os.utime(path, ns=(ns, ns))

    reused = 0
    for step in range(40):
        name = rng.choice(names)
        path = project.posts / name
        what = rng.random()
        if what < 0.1 and path.exists():
            path.unlink()
        elif what < 0.2:
            photo = project.posts / "images" / "photo.png"
            if photo.exists():
                photo.write_bytes(b"no longer an image") if rng.random() < 0.5 else photo.unlink()
            else:
                project.image("images/photo.png", fmt="PNG")
            if photo.exists():
                aged(photo)
        elif what < 0.3:
            _configure(project, rng.choice(_CONFIG_VARIANTS))
        else:
            aged(project.write(name, _random_post(rng, path.stem, rng.randint(-90, 90))))
        settings = project.settings()
        now = NOW + dt.timedelta(minutes=step)
        cache = PostCache(settings, keep=state)
        got = cache.read(now)
        reused += cache.last_read - cache.last_checked
        fresh = validate(settings, None, now, cache=PostCache(settings))
        assert _summary(got) == _summary(fresh), f"step {step}"
    assert reused > 40  # most steps took most files' checks from the step before


@pytest.mark.usefixtures("keep_at_once")
def test_a_missing_images_hint_follows_what_its_folder_holds(project: Project) -> None:
    """The error for a missing image suggests the names in its folder: a file added there
    changes the suggestion, in the cache a daemon holds and in the one kept on disk."""
    project.image("images/march.png", fmt="PNG")
    os.utime(project.posts / "images", ns=(0, 0))  # whatever the clock's tick, adding changes it
    project.write(
        "p.yaml",
        "id: p\nat: 2027-02-01 09:00\ntext: Photo.\n"
        "image: {file: images/photo.jpg, alt: A march., credit: Ana}\n",
    )
    settings = project.settings()
    held = PostCache(settings)

    def hint(cache: PostCache) -> str:
        (finding,) = cache.read(NOW).findings
        assert finding.code == "image-invalid"
        return finding.message

    assert "did you mean" not in hint(held)
    assert "did you mean" not in hint(PostCache(settings, keep=project.root / "state"))
    project.image("images/photo.jpeg", fmt="JPEG")
    assert "did you mean photo.jpeg?" in hint(held)
    kept = PostCache(settings, keep=project.root / "state")
    assert "did you mean photo.jpeg?" in hint(kept)
    assert kept.last_checked == 1


@pytest.mark.usefixtures("keep_at_once")
def test_kept_checks_keep_what_each_finding_says(project: Project) -> None:
    """Every part of a finding, from a kept parse and checks, is as checking found it:
    errors and warnings, lines, accounts, hints, and a file other than the post's own."""
    from postscheduler.errors import Finding, Severity, error
    from postscheduler.posts.parsed import _check_row, _uncheck_row

    post = project.posts / "p.yaml"
    for f in (
        error("x", "m", file=post, line=3, column=7, post_id="p", account="a", hint="h"),
        Finding(Severity.WARNING, "y", "n", project.config_path, 1, 1, "p", None, None),
        Finding(Severity.WARNING, "z", "o"),
    ):
        assert _uncheck_row(_check_row(f, str(post)), post) == f
    project.write(
        "p.yaml",
        "id: p\nat: 2027-02-01 09:00\naccounts: [a, nobody]\ntext: '#Peru today'\n"
        "thread:\n  - ''\n",
    )
    settings = project.settings()
    first = PostCache(settings, keep=project.root / "state")
    checked = first.read(NOW)
    again = PostCache(settings, keep=project.root / "state")
    kept = again.read(NOW)
    assert (again.last_read, again.last_checked) == (1, 0)
    assert kept.findings and _summary(kept) == _summary(checked)


def test_commands_keep_their_reads_but_a_cache_without_a_folder_does_not(
    project: Project,
) -> None:
    """validate, queue, preview... keep what they read in the state folder (ledger.db's);
    a cache given no folder (a schedule diff's, over scratch folders) keeps nothing."""
    from postscheduler.posts import cache as cache_module
    from postscheduler.posts.parsed import FILE_NAME

    settings = project.settings()
    for i in range(cache_module.SAVE_AFTER):
        path = project.write(f"p{i}.yaml", f"id: p{i}\nat: 2027-02-01 09:00\ntext: Post {i}.\n")
        os.utime(path, ns=(0, 0))
    kept = settings.state_dir / FILE_NAME
    validate(settings, None, NOW, cache=PostCache(settings))
    assert not kept.exists()
    validate(settings, None, NOW)
    assert kept.is_file()


def test_the_collector_paused_for_a_read_runs_again_after_it(project: Project) -> None:
    import gc

    from postscheduler.posts.parsed import collection_paused

    project.write("p.yaml", "id: p\nat: 2027-02-01 09:00\ntext: One.\n")
    cache = PostCache(project.settings())
    seen = []
    real_check = cache._check

    def check(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return real_check(*args)

    cache._check = check  # type: ignore[method-assign]
    assert gc.isenabled()
    cache.read(NOW)
    assert seen == [False] and gc.isenabled()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()  # paused by someone else: theirs to resume
    try:
        cache.forget([project.posts / "p.yaml"])
        cache.read(NOW)
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()
