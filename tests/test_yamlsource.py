from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from postscheduler.errors import YamlSourceError
from postscheduler.posts.yamlsource import MAX_NODES, parse_yaml, read_yaml

from .conftest import alias_bomb


def _problem(text: str) -> YamlSourceError:
    with pytest.raises(YamlSourceError) as info:
        parse_yaml(text, Path("p.yaml"))
    return info.value


def test_positions_of_keys_and_values() -> None:
    doc = parse_yaml("a: 1\nposts:\n  - id: x\n    text: hi\n", Path("p.yaml"))
    assert doc.mark_of(("posts", 0, "text")).line == 4
    assert doc.mark_of(("posts", 0, "text")).column == 11
    assert doc.mark_of(("posts", 0, "text"), key=True).column == 5
    # a missing key is placed at its nearest existing ancestor
    assert doc.mark_of(("posts", 0, "image", "credit")).line == 3


def test_syntax_error_has_position() -> None:
    finding = _problem('id: a\ntext: "unclosed\n').finding
    assert finding.code == "yaml-syntax"
    assert finding.line == 3


def test_bad_indentation() -> None:
    finding = _problem("id: a\n  text: b\n text: c\n").finding
    assert finding.code == "yaml-syntax"
    assert finding.line == 2


def test_duplicate_key_is_an_error() -> None:
    finding = _problem("id: a\ntext: one\ntext: two\n").finding
    assert (finding.code, finding.line, finding.column) == ("duplicate-key", 3, 1)


def test_times_stay_as_written() -> None:
    doc = parse_yaml("at: 2027-01-14 09:00:00\nd: 2027-01-14\n", Path("p.yaml"))
    assert doc.data == {"at": "2027-01-14 09:00:00", "d": "2027-01-14"}


def test_python_tags_are_refused() -> None:
    finding = _problem("x: !!python/object/apply:os.system ['true']\n").finding
    assert finding.code == "yaml-syntax"
    assert finding.line == 1


def test_merge_keys_work() -> None:
    doc = parse_yaml("base: &b {alt: a, credit: c}\nimage: {<<: *b, file: x.jpg}\n", Path("p"))
    assert doc.data["image"] == {"alt": "a", "credit": "c", "file": "x.jpg"}


def test_alias_bomb_is_rejected_with_bounded_memory() -> None:
    text = alias_bomb()
    tracemalloc.start()
    try:
        finding = _problem(text).finding
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert finding.code == "yaml-too-large"
    assert f"{MAX_NODES:,}" in finding.message
    assert peak < 64 * 1024 * 1024


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"id: a\ntext: caf\xe9\n")
    with pytest.raises(YamlSourceError) as info:
        read_yaml(path)
    finding = info.value.finding
    assert (finding.code, finding.line, finding.column) == ("not-utf8", 2, 10)


def test_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(YamlSourceError) as info:
        read_yaml(path)
    assert info.value.finding.code == "not-text"


def test_control_characters_without_nul(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"id: a\ntext: \x07bell\n")
    with pytest.raises(YamlSourceError) as info:
        read_yaml(path)
    finding = info.value.finding
    assert finding.code == "yaml-syntax"
    assert finding.line == 2


def test_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"text: " + b"x" * 2000 + b"\n")
    with pytest.raises(YamlSourceError) as info:
        read_yaml(path, max_bytes=1000)
    finding = info.value.finding
    assert finding.code == "file-too-large"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes("\ufeffid: a\n".encode())
    assert read_yaml(path).data == {"id": "a"}


def test_yaml_1_2_core_schema() -> None:
    """Only true/false, null and numbers are typed: `NO`, `yes`, `on`, `12:30` stay text."""
    text = (
        "a: yes\nb: NO\nc: on\nd: 12:30\ne: true\nf: ~\ng: 0x1F\nh: 010\ni: -1.5e3\n"
        "j: .inf\nk: '42'\nl: !!str 7\nm:\n"
    )
    data = parse_yaml(text, Path("p.yaml")).data
    assert data == {
        "a": "yes",
        "b": "NO",
        "c": "on",
        "d": "12:30",
        "e": True,
        "f": None,
        "g": 31,
        "h": 10,
        "i": -1500.0,
        "j": float("inf"),
        "k": "42",
        "l": "7",
        "m": None,
    }


def test_explicit_foreign_tag_is_refused() -> None:
    finding = _problem("credit: !!binary aGVsbG8=\n").finding
    assert (finding.code, finding.line) == ("yaml-syntax", 1)


def test_a_hashtag_after_an_unquoted_value_is_flagged_as_a_swallowed_comment() -> None:
    text = (
        "id: p  # a comment, as meant\n"
        "text: Join us ✊🏽 in Lima #Peru #Solidarity\n"
        'quote: {text: "quoted #kept", by: A B}\n'
        "link: https://example.org/page#anchor\n"
        "thread:\n  - >-\n    a block #kept\n"
    )
    doc = parse_yaml(text, Path("p.yaml"))
    assert doc.data["text"] == "Join us ✊🏽 in Lima"  # what YAML makes of it
    (finding,) = doc.warnings
    assert (finding.code, finding.line, finding.column) == ("hashtag-is-comment", 2, 26)
    assert "'#Peru'" in finding.message and "quotes" in (finding.hint or "")
    assert parse_yaml("text: plain\n", Path("p.yaml")).warnings == []


def test_a_tab_in_the_indentation_is_named_with_where_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "tab.yaml"
    path.write_text("id: t\nimage:\n\tfile: images/a.jpg\n")
    with pytest.raises(YamlSourceError) as info:
        read_yaml(path)
    finding = info.value.finding
    assert finding.code == "yaml-tab" and (finding.line, finding.column) == (3, 1)
    assert "tab" in finding.message and "spaces" in (finding.hint or "")
