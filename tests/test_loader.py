"""Bad input: every case gives a positioned finding, never an exception, and never hides others."""

from __future__ import annotations

import pytest

from postscheduler.errors import Finding
from postscheduler.posts.loader import load_posts

from .conftest import Project, alias_bomb

GOOD = """\
id: good
at: 2027-01-14 09:00
text: Still published.
"""


def _load(project: Project) -> tuple[list[str], list[Finding]]:
    catalog = load_posts(project.settings())
    return [sp.id for sp in catalog.posts], catalog.findings


def _only(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, findings
    return matching[0]


def test_single_post_id_defaults_to_file_name(project: Project) -> None:
    project.write("2027-01-launch.yaml", "at: 2027-01-14 09:00\ntext: hi\n")
    ids, findings = _load(project)
    assert ids == ["2027-01-launch"] and findings == []


def test_pack_shares_fields_and_posts_override_them(project: Project) -> None:
    project.write(
        "pack.yaml",
        """\
        link: https://example.org/a
        language: en
        posts:
          - {id: one, at: 2027-01-14 09:00, text: first}
          - {id: two, at: 2027-01-15 09:00, text: second, link: https://example.org/b}
        """,
    )
    catalog = load_posts(project.settings())
    one, two = catalog.posts
    assert one.post.link == "https://example.org/a" and two.post.link == "https://example.org/b"
    assert one.post.language == two.post.language == "en"
    # positions: an own key points into the entry, an inherited key at the shared field
    assert two.mark("link").line == 5
    assert one.mark("link").line == 1


def test_yaml_syntax_error_does_not_hide_other_files(project: Project) -> None:
    project.write("a-broken.yaml", 'id: a\nat: 2027-01-14 09:00\ntext: "unclosed\n')
    project.write("b-good.yaml", GOOD)
    ids, findings = _load(project)
    assert ids == ["good"]
    assert _only(findings, "yaml-syntax").file.name == "a-broken.yaml"


def test_wrong_type(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntext: [a, b]\n")
    f = _only(_load(project)[1], "invalid-value")
    assert (f.line, f.column, f.post_id) == (3, 7, "p")
    assert "text" in f.message and "got a list" in f.message


def test_unknown_key_suggests_the_right_one(project: Project) -> None:
    project.write(
        "p.yaml",
        """\
        id: p
        at: 2027-01-14 09:00
        text: hi
        image:
          file: images/photo.jpg
          alt: A banner.
          credti: Jane Doe
        """,
    )
    findings = _load(project)[1]
    f = _only(findings, "unknown-key")
    assert (f.line, f.column, f.post_id) == (7, 3, "p")
    assert f.hint == "did you mean 'credit'?"
    missing = _only(findings, "missing-key")
    assert "credit" in missing.message and "photo credit" in (missing.hint or "")


def test_unknown_key_in_pack_entry(project: Project) -> None:
    project.write(
        "p.yaml",
        """\
        posts:
          - id: one
            at: 2027-01-14 09:00
            txet: hi
        """,
    )
    f = _only(_load(project)[1], "unknown-key")
    assert (f.line, f.post_id, f.hint) == (4, "one", "did you mean 'text'?")


def test_shared_field_error_reported_once(project: Project) -> None:
    project.write(
        "p.yaml",
        """\
        lnk: https://example.org
        posts:
          - {id: one, at: 2027-01-14 09:00, text: a}
          - {id: two, at: 2027-01-14 10:00, text: b}
        """,
    )
    ids, findings = _load(project)
    assert ids == []
    assert _only(findings, "unknown-key").hint == "did you mean 'link'?"
    assert sorted(f.post_id for f in findings if f.code == "pack-invalid") == ["one", "two"]


def test_duplicate_ids_across_files_block_both(project: Project) -> None:
    project.write("a.yaml", "id: same\nat: 2027-01-14 09:00\ntext: a\n")
    project.write("b.yaml", "posts:\n  - {id: same, at: 2027-01-14 09:00, text: b}\n")
    project.write("c.yaml", GOOD)
    ids, findings = _load(project)
    assert ids == ["good"]
    dups = [f for f in findings if f.code == "duplicate-id"]
    assert {f.file.name for f in dups} == {"a.yaml", "b.yaml"}
    assert "posts/b.yaml:2" in next(f.message for f in dups if f.file.name == "a.yaml")


def test_invalid_post_still_claims_its_id(project: Project) -> None:
    project.write("a.yaml", "id: same\nat: not a time\ntext: a\n")
    project.write("b.yaml", "id: same\nat: 2027-01-14 09:00\ntext: b\n")
    ids, findings = _load(project)
    assert ids == []
    assert len([f for f in findings if f.code == "duplicate-id"]) == 2


def test_an_id_that_is_not_text_names_no_post_unless_it_is_a_number(project: Project) -> None:
    """`id: [a, b]` names no post (a finding's post id is text wherever it is used, the
    alerts too); `id: 2027`, an edit that dropped the quotes, still holds the post "2027"."""
    project.write("list.yaml", "id: [outbox, outbox]\nat: 2027-01-14 09:00\ntext: a\n")
    project.write("map.yaml", "id: {file: x.jpg}\nat: 2027-01-14 09:00\ntext: a\n")
    project.write("number.yaml", "id: 2027\nat: 2027-01-14 09:00\ntext: a\n")
    catalog = load_posts(project.settings())
    assert catalog.posts == []
    by_file = {f.file.name: f for f in catalog.findings if f.file is not None}
    assert by_file["list.yaml"].post_id is None and by_file["map.yaml"].post_id is None
    assert by_file["number.yaml"].post_id == "2027"
    assert catalog.blocked_ids == {"2027"}


def test_control_characters_in_any_text_are_errors_but_tabs_and_line_breaks_are_not(
    project: Project,
) -> None:
    """Invisible in an editor, a preview and a diff; refused by platforms or shown as a box."""
    project.write("bell.yaml", 'id: bell\nat: 2027-01-14 09:00\ntext: "Ring \\a now"\n')
    project.write(
        "quote.yaml", 'id: quote\nat: 2027-01-14 09:00\nquote: {text: Hi., by: "Ana\\e[0m"}\n'
    )
    project.write("thread.yaml", 'id: thread\nat: 2027-01-14 09:00\ntext: A.\nthread: ["B\\0"]\n')
    project.write(
        "credit.yaml",
        "id: credit\nat: 2027-01-14 09:00\ntext: A.\n"
        'image: {file: images/p.jpg, alt: A march., credit: "A\\x85na"}\n',
    )
    project.write("fine.yaml", 'id: fine\nat: 2027-01-14 09:00\ntext: "Tab\\there,\\nand on"\n')
    ids, findings = _load(project)
    assert ids == ["fine"]
    said = {f.post_id: (f.line, f.message) for f in findings}
    assert said == {
        "bell": (3, "text: contains an invisible control character, U+0007, at character 6: "
                 "remove it (it came with pasted text, or a \\ escape in quotes)"),
        "quote": (3, said["quote"][1]),
        "thread": (4, said["thread"][1]),
        "credit": (4, said["credit"][1]),
    }  # fmt: skip
    assert "U+001B, at character 4" in said["quote"][1]
    assert "U+0000" in said["thread"][1] and "U+0085" in said["credit"][1]


def test_empty_file(project: Project) -> None:
    project.write("empty.yaml", "")
    project.write("comments.yaml", "# nothing yet\n")
    project.write("good.yaml", GOOD)
    ids, findings = _load(project)
    assert ids == ["good"]
    assert sorted(f.file.name for f in findings if f.code == "empty-file") == [
        "comments.yaml",
        "empty.yaml",
    ]


def test_non_mapping_top_level(project: Project) -> None:
    project.write("list.yaml", "- a\n- b\n")
    project.write("scalar.yaml", "just words\n")
    findings = _load(project)[1]
    assert len([f for f in findings if f.code == "not-a-mapping"]) == 2


def test_pack_entry_not_a_mapping(project: Project) -> None:
    project.write("p.yaml", "posts:\n  - just text\n  - {id: ok, at: 2027-01-14 09:00, text: a}\n")
    ids, findings = _load(project)
    assert ids == ["ok"]
    assert _only(findings, "invalid-value").line == 2


def test_invalid_utf8_and_binary_files(project: Project) -> None:
    project.write_bytes("latin1.yaml", b"id: x\nat: 2027-01-14 09:00\ntext: caf\xe9\n")
    project.write_bytes("junk.yaml", bytes(range(256)))
    project.write("good.yaml", GOOD)
    ids, findings = _load(project)
    assert ids == ["good"]
    assert {f.code for f in findings} == {"not-utf8", "not-text"}


def test_alias_bomb_file(project: Project) -> None:
    project.write("bomb.yaml", alias_bomb())
    project.write("good.yaml", GOOD)
    ids, findings = _load(project)
    assert ids == ["good"]
    assert _only(findings, "yaml-too-large").file.name == "bomb.yaml"


def test_oversized_file(project: Project) -> None:
    project.write("huge.yaml", "text: " + "x" * (1024 * 1024 + 10) + "\n")
    assert _only(_load(project)[1], "file-too-large").file.name == "huge.yaml"


def test_javascript_link(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\nlink: javascript:alert(1)\n")
    f = _only(_load(project)[1], "invalid-value")
    assert f.line == 3 and "javascript:" in f.message and "https://" in f.message


def test_post_with_nothing_to_publish(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\naccounts: [outbox]\n")
    f = _only(_load(project)[1], "invalid-value")
    assert f.post_id == "p" and "nothing to publish" in f.message


def test_missing_time_unless_draft(project: Project) -> None:
    project.write("a.yaml", "id: a\ntext: hi\n")
    project.write("b.yaml", "id: b\nstatus: draft\ntext: hi\n")
    ids, findings = _load(project)
    assert ids == ["b"]
    assert "at:" in _only(findings, "invalid-value").message


def test_dst_gap_and_overlap_name_both_instants(project: Project) -> None:
    project.write("gap.yaml", "id: gap\nat: 2027-03-28 01:30\ntext: hi\n")
    project.write("fold.yaml", "id: fold\nat: 2027-10-31 01:30\ntext: hi\n")
    findings = _load(project)[1]
    gap = next(f for f in findings if f.post_id == "gap")
    fold = next(f for f in findings if f.post_id == "fold")
    assert "does not exist" in gap.message  # in the local clock: just before, just after
    assert "00:30 GMT (write 2027-03-28T00:30+00:00)" in gap.message
    assert "02:30 BST (write 2027-03-28T02:30+01:00)" in gap.message
    assert "happens twice" in fold.message
    assert "01:30 BST (write 2027-10-31T01:30+01:00)" in fold.message
    assert "01:30 GMT (write 2027-10-31T01:30+00:00)" in fold.message
    assert (gap.line, gap.column) == (2, 5)


def test_expires_before_at(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\nexpires: 2027-01-14 08:00\ntext: hi\n")
    assert "expires" in _only(_load(project)[1], "invalid-value").message


def test_hidden_files_and_other_suffixes_are_ignored(project: Project) -> None:
    project.write(".draft.yaml", "broken: [")
    project.write(".git/x.yaml", "broken: [")
    project.write("notes.txt", "broken: [")
    project.write("p.yml", GOOD)
    assert _load(project) == (["good"], [])


@pytest.mark.parametrize(
    "at",
    [
        "9999-12-31T23:00-05:00",
        "0001-01-01T00:30+05:00",
        "1900-01-01 09:00",
        "2300-01-01 09:00",
        "2027-01-14 09:00 America",  # a folder of zones, not a zone
    ],
)
def test_times_at_the_edges_are_located_errors(project: Project, at: str) -> None:
    project.write("edge.yaml", f"id: edge\nat: {at}\ntext: hi\n")
    project.write("fine.yaml", "id: fine\nat: 2027-01-14 09:00\ntext: hi\n")
    catalog = load_posts(project.settings())
    (finding,) = [f for f in catalog.findings if f.is_error]
    assert (finding.post_id, finding.line) == ("edge", 2), finding
    assert "fine" in {sp.id for sp in catalog.posts}


def test_a_duration_too_long_to_mean_anything_is_refused(project: Project) -> None:
    from postscheduler.errors import ConfigError

    for value in ("99999999999d", "1e300"):
        project.config_path.write_text(f"publishing: {{late_grace: {value}}}\n")
        with pytest.raises(ConfigError) as info:
            project.settings()
        assert "late_grace" in str(info.value)


def test_fifos_and_symlinks_out_of_posts_are_not_read(project: Project, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    import os

    outside = tmp_path_factory.mktemp("elsewhere") / "secret.yaml"
    outside.write_text("id: leak\nat: 2027-01-14 09:00\ntext: SECRET-VALUE-from-outside\n")
    (project.posts / "linked.yaml").symlink_to(outside)
    os.mkfifo(project.posts / "pipe.yaml")  # would block a reader for ever
    project.write("fine.yaml", "id: fine\nat: 2027-01-14 09:00\ntext: hi\n")
    catalog = load_posts(project.settings())
    codes = {f.file.name: f.code for f in catalog.findings if f.file is not None}
    assert codes == {"linked.yaml": "outside-posts-dir", "pipe.yaml": "not-a-file"}
    assert [sp.id for sp in catalog.posts] == ["fine"]
    assert not any("SECRET-VALUE" in f.message for f in catalog.findings)


def test_a_file_that_is_not_there_is_said_to_be_missing(project: Project) -> None:
    """`validate posts/typo.yaml`, a symlink to nothing, a name too long for the file
    system: each says what it is, and the other files are read."""
    (project.posts / "dangling.yaml").symlink_to(project.root / "nowhere.yaml")
    project.write("fine.yaml", "id: fine\nat: 2027-01-14 09:00\ntext: hi\n")
    typo, long = project.posts / "typo.yaml", project.posts / ("x" * 300 + ".yaml")
    catalog = load_posts(project.settings(), [project.posts, typo, long])
    said = {f.file.name[:9]: (f.code, f.message) for f in catalog.findings if f.file is not None}
    assert said == {
        "dangling.": ("not-found", "a symlink to a file that is not there: not read"),
        "typo.yaml": ("not-found", "no such file: not read"),
        "xxxxxxxxx": ("unreadable", "cannot read the file: File name too long"),
    }
    assert [sp.id for sp in catalog.posts] == ["fine"]


@pytest.mark.parametrize("when", ["2027-03-10", "2027-03-10 America/Lima", "'2027-03-10'"])
def test_a_date_without_a_time_is_an_error_that_asks_for_one(project: Project, when: str) -> None:
    project.write("d.yaml", f"id: d\nat: {when}\ntext: hi\n")
    (finding,) = [f for f in load_posts(project.settings()).findings if f.is_error]
    assert (finding.post_id, finding.line) == ("d", 2)
    assert "has no time of day" in finding.message and "2027-03-10 09:00" in finding.message


def test_a_language_name_is_refused_with_its_code(project: Project) -> None:
    project.write("l.yaml", "id: l\nat: 2027-01-14 09:00\ntext: hola\nlanguage: Spanish\n")
    project.write("ok.yaml", "id: ok\nat: 2027-01-14 09:00\ntext: oi\nlanguage: pt-BR\n")
    catalog = load_posts(project.settings())
    (finding,) = [f for f in catalog.findings if f.is_error]
    assert (finding.post_id, finding.line) == ("l", 4) and "'es' for Spanish" in finding.message
    assert catalog.get("ok").post.language == "pt-BR"


def test_a_bad_id_is_explained_in_words_not_a_pattern(project: Project) -> None:
    project.write("i.yaml", "id: 'peru article!'\nat: 2027-01-14 09:00\ntext: hi\n")
    (finding,) = [f for f in load_posts(project.settings()).findings if f.is_error]
    assert "letters" in finding.message and "[A-Za-z" not in finding.message
    assert (finding.line, finding.column) == (1, 5)


def test_validating_one_file_still_checks_its_ids_against_the_folder(project: Project) -> None:
    project.write("a.yaml", "id: shared-id\nat: 2027-01-14 09:00\ntext: one\n")
    b = project.write("b.yaml", "id: shared-id\nat: 2027-01-15 09:00\ntext: two\n")
    project.write("c.yaml", "id: other\nat: [\n")  # a broken file elsewhere is not reported
    catalog = load_posts(project.settings(), [b])
    (finding,) = catalog.findings
    assert finding.code == "duplicate-id" and finding.file == b and "a.yaml:1" in finding.message
    assert "shared-id" in catalog.blocked_ids


def test_pack_posts_errors_point_at_the_post_and_a_missing_image_says_where(
    project: Project,
) -> None:
    from postscheduler.posts.rules import validate

    project.image("images/juliaca.jpg")
    project.write(
        "pack.yaml",
        "link: https://example.org/a\nposts:\n"
        "  - id: one\n    at: 2027-01-14 09:00\n    text: fine\n"
        "  - id: two\n    text: no time\n"
        "  - id: four\n    at: 2027-01-14 09:00\n"
        "    image: {file: images/juliaca.jgp, alt: a, credit: b}\n",
    )
    found = {f.post_id: f for f in validate(project.settings()).findings if f.is_error}
    assert (found["two"].line, found["two"].column) == (6, 5)
    assert (
        "images/" in found["four"].message and "did you mean juliaca.jpg" in found["four"].message
    )
