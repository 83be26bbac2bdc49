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
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import Finding, YamlSourceError, error, warning

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"

# YAML 1.2 "core schema" for plain scalars: only these become non-strings. YAML 1.1's
# yes/no/on/off booleans, sexagesimal numbers and implicit timestamps stay text, so
# `credit: NO` (a photographer's initials) or `text: yes` mean what they say.
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL = (_NULL_TAG, re.compile(r"^(?:~|null|Null|NULL|)$"))
_BOOL = (_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
_INT = (_INT_TAG, re.compile(r"^[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"))
_FLOAT = (
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
)
_NUMBER = (_INT, _FLOAT)
# Candidates by first character, so most text is settled by one dict lookup.
_BY_FIRST: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    "": (_NULL,),
    "~": (_NULL,),
    "n": (_NULL,),
    "N": (_NULL,),
    "t": (_BOOL,),
    "T": (_BOOL,),
    "f": (_BOOL,),
    "F": (_BOOL,),
    "<": ((_MERGE_TAG, re.compile(r"^<<$")),),
    **dict.fromkeys("0123456789-+.", _NUMBER),
}


class _CoreResolver:
    """Resolves tags by the YAML 1.2 core schema, in one cheap call per node.

    libyaml's parser asks the resolver about every node; PyYAML's own resolver keeps a stack
    for path resolvers we never use. Doing without it is most of what makes validating
    thousands of post files cost little more than parsing them.
    """

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, pattern in _BY_FIRST.get(value[:1], ()):
                    if pattern.match(value):
                        return tag
            return _STR_TAG
        return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG


try:  # libyaml's parser is several times faster than PyYAML's own
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)


class _Loader(_Parser, yaml.constructor.SafeConstructor, _CoreResolver):
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)


MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000

Path_ = tuple[str | int, ...]

_COLLECTION_TAGS = frozenset({_MAP_TAG, _SEQ_TAG})


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclasses.dataclass(slots=True)
class Document:
    """A parsed YAML document: its value and where each part of it was written.

    Positions are kept packed in one int each (see ``_pack``) and turned into ``Mark`` only
    when a finding needs one: a catalog of thousands of posts keeps every position, and
    PyYAML's mark objects would be most of its memory.
    """

    path: Path
    data: Any
    value_marks: dict[Path_, int]
    key_marks: dict[Path_, int]
    warnings: list[Finding] = dataclasses.field(default_factory=list)
    # ``digest_of`` the bytes parsed, when read from a file: what a kept parse is matched by
    # once the file's stamp has changed (a fresh checkout, a touch).
    digest: bytes = b""

    def mark_of(self, loc: Path_, *, key: bool = False) -> Mark:
        """Position of the value (or of its key) at ``loc``, else of its nearest ancestor."""
        marks = self.key_marks if key else self.value_marks
        probe = tuple(loc)
        while probe:
            if probe in marks:
                return _unpack(marks[probe])
            if probe in self.value_marks:
                return _unpack(self.value_marks[probe])
            probe = probe[:-1]
        root = self.value_marks.get(())
        return _unpack(root) if root is not None else Mark(1, 1)

    def where(self, loc: Path_, *, key: bool = False) -> dict[str, Any]:
        """``file``, ``line`` and ``column`` keyword arguments for a finding at ``loc``."""
        mark = self.mark_of(loc, key=key)
        return {"file": self.path, "line": mark.line, "column": mark.column}


def _mark(m: Any) -> Mark:
    return Mark(m.line + 1, m.column + 1)


def _fail(
    code: str, message: str, file: Path, at: Any = None, hint: str | None = None
) -> YamlSourceError:
    """The exception for a problem at PyYAML mark ``at`` (or the whole file)."""
    where = _mark(at) if at is not None else Mark(0, 0)
    return YamlSourceError(
        error(code, message, file=file, line=where.line, column=where.column, hint=hint)
    )


_COLUMN_BITS = 24


_COLUMN_MAX = (1 << _COLUMN_BITS) - 1


def _pack(m: yaml.Mark) -> int:
    column = m.column  # not min(): this runs for every key and value of every file
    return (m.line << _COLUMN_BITS) | (column if column < _COLUMN_MAX else _COLUMN_MAX)


def _unpack(packed: int) -> Mark:
    return Mark((packed >> _COLUMN_BITS) + 1, (packed & ((1 << _COLUMN_BITS) - 1)) + 1)


def _scalar(node: yaml.Node, file: Path) -> Any:
    value: str = node.value
    tag = node.tag
    if tag == _NULL_TAG:
        return None
    if tag == _BOOL_TAG:
        return value.lower() == "true"
    try:
        if tag == _INT_TAG:
            return int(value, 0) if value.lstrip("+-")[:2] in ("0x", "0o") else int(value, 10)
        if tag == _FLOAT_TAG:
            return float(value.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf"))
    except ValueError:
        pass
    if tag in (_INT_TAG, _FLOAT_TAG):
        raise _fail("yaml-syntax", f"cannot read {value!r} as a number", file, node.start_mark)
    raise _fail(*_FOREIGN_TAG, file, node.start_mark, hint="remove the !tag")


_FOREIGN_TAG = ("yaml-syntax", "this YAML !tag is not allowed in post files")


# After an unquoted value, " #word" is a YAML comment: `text: Join us #Peru` loses the tag.
_TAG_COMMENT = re.compile(r"[ \t]+(#[^\s#][^\s]*)")


class _Builder:
    def __init__(self, loader: Any, file: Path, text: str) -> None:
        self.loader = loader
        self.file = file
        self.count = 0
        self.value_marks: dict[Path_, int] = {}
        self.key_marks: dict[Path_, int] = {}
        self.text = text if "#" in text else None  # most files have no comment to look at
        self.warnings: list[Finding] = []

    def _check_swallowed_tag(self, node: yaml.Node) -> None:
        assert self.text is not None
        end = node.end_mark.index
        line_end = self.text.find("\n", end)
        rest = self.text[end : line_end if line_end >= 0 else len(self.text)]
        found = _TAG_COMMENT.match(rest)
        if found is None:
            return
        mark = node.end_mark
        self.warnings.append(
            warning(
                "hashtag-is-comment",
                f"{found[1]!r} after the unquoted value is a YAML comment, not part of it: "
                f"the value ends at {node.value[-30:]!r}",
                file=self.file,
                line=mark.line + 1,
                column=mark.column + 1 + found.start(1),
                hint='put the whole value in quotes ("…"), or write it as a block (>-)',
            )
        )

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _fail(
                "yaml-too-large",
                f"the document expands to more than {MAX_NODES:,} values "
                "(nested aliases: a YAML 'billion laughs' bomb?)",
                self.file,
                node.start_mark,
                hint="write the values out instead of repeating aliases",
            )
        self.value_marks.setdefault(path, _pack(node.start_mark))
        tag = node.tag
        if tag == _STR_TAG:
            if self.text is not None and isinstance(node, yaml.ScalarNode) and not node.style:
                self._check_swallowed_tag(node)
            return node.value  # the common case, without PyYAML's constructor dispatch
        if isinstance(node, yaml.CollectionNode) and node.tag not in _COLLECTION_TAGS:
            raise _fail(*_FOREIGN_TAG, self.file, node.start_mark, hint="remove the !tag")
        if isinstance(node, yaml.MappingNode):
            if any(key.tag == _MERGE_TAG for key, _ in node.value):
                self.loader.flatten_mapping(node)  # resolves `<<:` merge keys
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = (
                    key_node.value
                    if key_node.tag == _STR_TAG
                    else self.build(key_node, (*path, "<key>"))
                )
                if isinstance(key, list | dict):
                    raise _fail(
                        "yaml-syntax",
                        "a key must be a plain word, not a list or mapping",
                        self.file,
                        key_node.start_mark,
                    )
                if key in result:
                    raise _fail(
                        "duplicate-key",
                        f"key {key!r} appears twice in the same mapping",
                        self.file,
                        key_node.start_mark,
                        hint="remove one of them: YAML would silently keep only the last",
                    )
                child = (*path, key)
                self.key_marks[child] = _pack(key_node.start_mark)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return _scalar(node, self.file)


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


def _reader_problem(exc: yaml.reader.ReaderError, text: str, file: Path) -> YamlSourceError:
    before = text[: exc.position]
    return YamlSourceError(
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
    )


def _tab_near(text: str, mark: Any) -> Mark | None:
    """Where a tab indents the line PyYAML stopped on (or the one before): PyYAML then says
    "found character that cannot start any token", which names neither the tab nor a fix."""
    if mark is None:
        return None
    lines = text.split("\n")
    for index in (mark.line, mark.line - 1):
        if 0 <= index < len(lines):
            line = lines[index]
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in indent:
                return Mark(index + 1, indent.index("\t") + 1)
    return None


def parse_yaml(text: str, file: Path) -> Document:
    """Parse one YAML document from ``text``; raise YamlSourceError with a positioned finding."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the pure-Python reader checks on creation
        raise _reader_problem(exc, text, file) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            tab = _tab_near(text, mark)
            if tab is not None:
                raise YamlSourceError(
                    error(
                        "yaml-tab",
                        "a tab in the indentation: YAML indents with spaces only",
                        file=file,
                        line=tab.line,
                        column=tab.column,
                        hint="replace the tab with spaces (set your editor to insert spaces "
                        "for the Tab key)",
                    )
                ) from None
            problem = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                problem = f"{exc.problem} ({exc.context})"
            raise _fail(
                "yaml-syntax",
                f"YAML syntax error: {problem}",
                file,
                exc.problem_mark or exc.context_mark,
                hint="check the indentation and quoting around this position",
            ) from None
        except yaml.reader.ReaderError as exc:
            raise _reader_problem(exc, text, file) from None
        except yaml.YAMLError as exc:
            raise _fail("yaml-syntax", f"YAML syntax error: {exc}", file) from None
        if node is None:
            return Document(file, None, {}, {})
        builder = _Builder(loader, file, text)
        try:
            data = builder.build(node, ())
        except yaml.constructor.ConstructorError as exc:  # from merge keys (<<)
            raise _fail(
                "yaml-syntax", f"YAML error: {exc.problem}", file, exc.problem_mark
            ) from None
        except RecursionError:
            raise _fail("yaml-too-large", "the document is nested too deeply", file) from None
        return Document(file, data, builder.value_marks, builder.key_marks, builder.warnings)
    finally:
        loader.dispose()


def read_yaml(file: Path, *, max_bytes: int = MAX_FILE_BYTES) -> Document:
    """Read and parse ``file``; every problem becomes a YamlSourceError carrying a finding."""
    try:
        with file.open("rb") as fh:
            # Asked for the cap at once, read() allocates it (a megabyte) for every file,
            # which cost more than parsing; asked for the size, a file that grows
            # meanwhile is read on, never past the cap.
            size = os.fstat(fh.fileno()).st_size
            raw = fh.read(min(size, max_bytes) + 1)
            if len(raw) > size:
                raw += fh.read(max_bytes + 1 - len(raw))
            if len(raw) > max_bytes:
                size = os.fstat(fh.fileno()).st_size
                raise YamlSourceError(
                    error(
                        "file-too-large",
                        f"file is {size:,} bytes, over the {max_bytes:,}-byte limit "
                        "for a post file",
                        file=file,
                        hint="split it into several files",
                    )
                )
    except OSError as exc:
        raise YamlSourceError(
            error("unreadable", f"cannot read the file: {exc.strerror}", file=file)
        ) from None
    doc = parse_yaml(_decode(raw, file), file)
    doc.digest = digest_of(raw)
    return doc


def digest_of(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()
