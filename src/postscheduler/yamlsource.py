"""Read a YAML file into plain Python values plus a map from each value's path to its position.

PyYAML's own constructors throw away where a value came from; the user needs that position in
every message ("posts/a.yaml:12:5"). So we let libyaml (the C parser, when available) compose
the node graph and build the values ourselves, recording the position of every key and value
under its path, e.g. ``("posts", 0, "image", "credit")``.

Hostile input is bounded: files over ``MAX_FILE_BYTES`` are refused before they are read,
invalid UTF-8 and binary data are reported with their position, and a document whose aliases
expand past ``MAX_NODES`` values (a "billion laughs" bomb) is rejected while building, before
it can use much memory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from .errors import Finding, error

try:  # libyaml is several times faster; fall back so a pure-Python PyYAML still works
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000

Path_ = tuple[str | int, ...]

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclasses.dataclass(slots=True)
class Document:
    """A parsed YAML document: its value and where each part of it was written."""

    path: Path
    data: Any
    value_marks: dict[Path_, Mark]
    key_marks: dict[Path_, Mark]

    def mark_of(self, loc: Path_, *, key: bool = False) -> Mark:
        """Position of the value (or of its key) at ``loc``, else of its nearest ancestor."""
        marks = self.key_marks if key else self.value_marks
        probe = tuple(loc)
        while probe:
            if probe in marks:
                return marks[probe]
            if probe in self.value_marks:
                return self.value_marks[probe]
            probe = probe[:-1]
        return self.value_marks.get((), Mark(1, 1))


class YamlSourceError(Exception):
    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(finding.message)


def _mark(m: Any) -> Mark:
    return Mark(m.line + 1, m.column + 1)


class _Builder:
    def __init__(self, loader: Any, file: Path) -> None:
        self.loader = loader
        self.file = file
        self.count = 0
        self.value_marks: dict[Path_, Mark] = {}
        self.key_marks: dict[Path_, Mark] = {}

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            m = _mark(node.start_mark)
            raise YamlSourceError(
                error(
                    "yaml-too-large",
                    f"the document expands to more than {MAX_NODES:,} values "
                    "(nested aliases: a YAML 'billion laughs' bomb?)",
                    file=self.file,
                    line=m.line,
                    column=m.column,
                    hint="write the values out instead of repeating aliases",
                )
            )
        self.value_marks.setdefault(path, _mark(node.start_mark))
        if isinstance(node, yaml.CollectionNode) and node.tag not in _COLLECTION_TAGS:
            m = _mark(node.start_mark)
            raise YamlSourceError(
                error(
                    "yaml-syntax",
                    f"YAML tag {node.tag!r} is not allowed in post files",
                    file=self.file,
                    line=m.line,
                    column=m.column,
                    hint="remove the !tag",
                )
            )
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<:` merge keys
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, (*path, "<key>"))
                if isinstance(key, list | dict):
                    m = _mark(key_node.start_mark)
                    raise YamlSourceError(
                        error(
                            "yaml-syntax",
                            "a key must be a plain word, not a list or mapping",
                            file=self.file,
                            line=m.line,
                            column=m.column,
                        )
                    )
                if key in result:
                    m = _mark(key_node.start_mark)
                    raise YamlSourceError(
                        error(
                            "duplicate-key",
                            f"key {key!r} appears twice in the same mapping",
                            file=self.file,
                            line=m.line,
                            column=m.column,
                            hint="remove one of them: YAML would silently keep only the last",
                        )
                    )
                child = (*path, key)
                self.key_marks[child] = _mark(key_node.start_mark)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag == _TIMESTAMP_TAG:
            # Keep times as written: PyYAML would turn "2027-01-14 09:00:00" into a naive
            # datetime and drop what the zone rules need to see. The models parse them.
            return node.value
        return self.loader.construct_object(node, deep=True)


def _decode(raw: bytes, file: Path) -> str:
    if b"\x00" in raw[:8192]:
        raise YamlSourceError(
            error(
                "not-text",
                "this is not a text file (it contains NUL bytes)",
                file=file,
                hint="post files are UTF-8 YAML; was a binary file saved with a .yaml name?",
            )
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise YamlSourceError(
            error(
                "not-utf8",
                f"invalid UTF-8 (byte 0x{raw[exc.start]:02x})",
                file=file,
                line=line,
                column=column,
                hint="save the file as UTF-8",
            )
        ) from None
    return text.removeprefix("\ufeff")


def parse_yaml(text: str, file: Path) -> Document:
    """Parse one YAML document from ``text``; raise YamlSourceError with a positioned finding."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = _mark(mark) if mark is not None else Mark(0, 0)
            problem = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                problem = f"{exc.problem} ({exc.context})"
            raise YamlSourceError(
                error(
                    "yaml-syntax",
                    f"YAML syntax error: {problem}",
                    file=file,
                    line=where.line,
                    column=where.column,
                    hint="check the indentation and quoting around this position",
                )
            ) from None
        except yaml.reader.ReaderError as exc:
            before = text[: exc.position]
            raise YamlSourceError(
                error(
                    "yaml-syntax",
                    f"character U+{exc.character:04X} is not allowed in YAML"
                    if isinstance(exc.character, int)
                    else f"YAML syntax error: {exc.reason}",
                    file=file,
                    line=before.count("\n") + 1,
                    column=exc.position - (before.rfind("\n") + 1) + 1,
                    hint="remove the control character",
                )
            ) from None
        except yaml.YAMLError as exc:
            raise YamlSourceError(
                error("yaml-syntax", f"YAML syntax error: {exc}", file=file)
            ) from None
        if node is None:
            return Document(file, None, {}, {})
        builder = _Builder(loader, file)
        try:
            data = builder.build(node, ())
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            where = _mark(mark) if mark is not None else Mark(0, 0)
            raise YamlSourceError(
                error(
                    "yaml-syntax",
                    f"YAML error: {exc.problem}",
                    file=file,
                    line=where.line,
                    column=where.column,
                )
            ) from None
        except RecursionError:
            raise YamlSourceError(
                error("yaml-too-large", "the document is nested too deeply", file=file)
            ) from None
        return Document(file, data, builder.value_marks, builder.key_marks)
    finally:
        loader.dispose()


def read_yaml(file: Path, *, max_bytes: int = MAX_FILE_BYTES) -> Document:
    """Read and parse ``file``; every problem becomes a YamlSourceError carrying a finding."""
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise YamlSourceError(
                error(
                    "file-too-large",
                    f"file is {size:,} bytes, over the {max_bytes:,}-byte limit for a post file",
                    file=file,
                    hint="split it into several files",
                )
            )
        raw = file.read_bytes()
    except OSError as exc:
        raise YamlSourceError(
            error("unreadable", f"cannot read the file: {exc.strerror}", file=file)
        ) from None
    return parse_yaml(_decode(raw, file), file)
