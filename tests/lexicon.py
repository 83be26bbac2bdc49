"""Check records against the official AT Protocol lexicons (JSON files in ../shared).

Covers the lexicon features app.bsky.feed.post and its embeds use: objects with required
and nullable fields, strings with byte and grapheme limits and formats, integers, arrays,
refs, open unions (``$type``), blobs with accept and maxSize. Unknown fields are allowed,
as in the spec. Errors name the path (``embed.images[0].alt``) the way the PDS does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from postscheduler.platforms import counting


class LexiconError(ValueError):
    pass


_FORMATS = {
    "did": re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]"),
    "at-uri": re.compile(r"at://[^\s/]+(/[a-zA-Z0-9.-]+(/[a-zA-Z0-9._~:@!$&')(*+,;=%-]+)?)?"),
    "cid": re.compile(r"[a-zA-Z0-9+=]{8,256}"),
    "language": re.compile(r"([a-z]{2,3}|[ix])(-[a-zA-Z0-9]+)*"),
    "uri": re.compile(r"[a-z][a-z.-]*:\S+"),
}


class Lexicons:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._docs: dict[str, dict[str, Any]] = {}

    def _def(self, ref: str, context: str) -> dict[str, Any]:
        nsid, _, name = ref.partition("#")
        nsid = nsid or context
        if nsid not in self._docs:
            path = self.root.joinpath(*nsid.split(".")).with_suffix(".json")
            self._docs[nsid] = json.loads(path.read_text())
        return dict(self._docs[nsid]["defs"][name or "main"]) | {"_nsid": nsid}

    def validate_record(self, nsid: str, value: dict[str, Any]) -> None:
        main = self._def(nsid, nsid)
        if value.get("$type") != nsid:
            raise LexiconError(f"$type must be {nsid}")
        self._check(main["record"] | {"_nsid": nsid}, value, "", nsid)

    def _check(self, schema: dict[str, Any], value: Any, path: str, nsid: str) -> None:
        nsid = schema.get("_nsid", nsid)
        kind = schema["type"]
        where = path or "record"
        if kind == "ref":
            self._check(self._def(schema["ref"], nsid), value, path, nsid)
        elif kind == "union":
            if not isinstance(value, dict) or "$type" not in value:
                raise LexiconError(f"{where} must be an object with $type")
            full = {(f"{nsid}{r}" if r.startswith("#") else r) for r in schema["refs"]}
            names = {r.removesuffix("#main") for r in full}
            if value["$type"] not in names:
                raise LexiconError(f"{where} $type {value['$type']} is not one of {sorted(names)}")
            self._check(self._def(value["$type"], nsid), value, path, nsid)
        elif kind == "object":
            if not isinstance(value, dict):
                raise LexiconError(f"{where} must be an object")
            for name in schema.get("required", []):
                if name not in value:
                    raise LexiconError(f"{where} must have the property {name!r}")
            nullable = set(schema.get("nullable", []))
            for name, prop in schema.get("properties", {}).items():
                if name in value and not (value[name] is None and name in nullable):
                    self._check(prop, value[name], f"{path}.{name}".lstrip("."), nsid)
        elif kind == "string":
            self._string(schema, value, where)
        elif kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                raise LexiconError(f"{where} must be an integer")
            if "minimum" in schema and value < schema["minimum"]:
                raise LexiconError(f"{where} must be at least {schema['minimum']}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise LexiconError(f"{where} must be a boolean")
        elif kind == "array":
            if not isinstance(value, list):
                raise LexiconError(f"{where} must be an array")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                raise LexiconError(f"{where} must have at most {schema['maxLength']} items")
            for i, item in enumerate(value):
                self._check(schema["items"], item, f"{path}[{i}]", nsid)
        elif kind == "blob":
            self._blob(schema, value, where)
        elif kind != "unknown":
            raise LexiconError(f"{where}: lexicon type {kind} is not supported by this checker")

    @staticmethod
    def _string(schema: dict[str, Any], value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise LexiconError(f"{where} must be a string")
        if "maxLength" in schema and len(value.encode()) > schema["maxLength"]:
            raise LexiconError(f"{where} must not be longer than {schema['maxLength']} bytes")
        if "maxGraphemes" in schema and counting.graphemes(value) > schema["maxGraphemes"]:
            raise LexiconError(
                f"{where} must not be longer than {schema['maxGraphemes']} graphemes"
            )
        fmt = schema.get("format")
        if fmt == "datetime":
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
                raise LexiconError(f"{where} must be an RFC 3339 datetime")
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif fmt in _FORMATS and not _FORMATS[fmt].fullmatch(value):
            raise LexiconError(f"{where} must be a valid {fmt}")

    @staticmethod
    def _blob(schema: dict[str, Any], value: Any, where: str) -> None:
        if not isinstance(value, dict) or value.get("$type") != "blob":
            raise LexiconError(f"{where} must be a blob")
        mime, size = value.get("mimeType", ""), value.get("size", 0)
        accept = schema.get("accept", ["*/*"])
        if not any(a == "*/*" or mime == a or mime.startswith(a.rstrip("*")) for a in accept):
            raise LexiconError(f"{where} of type {mime} is not one of {accept}")
        if "maxSize" in schema and size > schema["maxSize"]:
            raise LexiconError(f"{where} is {size} bytes, over {schema['maxSize']}")
        if not isinstance(value.get("ref"), dict) or "$link" not in value["ref"]:
            raise LexiconError(f"{where} must have a ref")
