"""Turn pydantic's validation errors into findings that point at the YAML the user wrote.

pydantic reports a location such as ``("posts", 2, "image", "credit")``; the YAML document
knows the line and column of every key and value under that path. Unknown keys get a
"did you mean" from the fields the model accepts at that place.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import Finding, error
from ..platforms import PLATFORMS
from .models import ID_PATTERN
from .yamlsource import Document

Loc = tuple[str | int, ...]

# What to say when one of these keys is missing: the rule behind it, not just its name.
_MISSING_HINTS = {
    "credit": "every image needs a photo credit (who took it, or the source); "
    "it is added to the published text",
    "alt": "every image needs alt text: what it shows, for people who cannot see it",
    "platform": "say which platform the account is on: "
    + ", ".join(list(PLATFORMS)[:-1])
    + f" or {list(PLATFORMS)[-1]}",
    "by": "a quote needs the name of who said it",
}


# Patterns a person should never be shown as a regular expression.
_IN_WORDS = {
    ID_PATTERN: "an id is 1 to 128 letters (a-z, A-Z), digits, '.', '_' or '-', and starts "
    "with a letter or digit, e.g. peru-article-2"
}


def _members(annotation: Any) -> list[Any]:
    """The types an annotation may hold, unwrapping Annotated, Optional and unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_members(arg))
        return out
    return [annotation]


def fields_at(model: type[BaseModel], loc: Sequence[str | int], data: Any = None) -> set[str]:
    """Names of the keys accepted by the mapping found at ``loc`` under ``model``.

    ``data`` is that mapping: a model whose keys depend on its content (an account's depend
    on its platform) says which through a ``keys_for(data)`` class method.
    """
    current: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for typ in current:
            origin = typing.get_origin(typ)
            if isinstance(typ, type) and issubclass(typ, BaseModel):
                field = typ.model_fields.get(str(part))
                if field is not None:
                    following.extend(_members(field.annotation))
            elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
                following.extend(_members(typing.get_args(typ)[0]))
            elif origin is dict:
                following.extend(_members(typing.get_args(typ)[1]))
        current = following or current
    names: set[str] = set()
    for typ in current:
        if isinstance(typ, type) and issubclass(typ, BaseModel):
            keys_for = getattr(typ, "keys_for", None)
            if keys_for is not None and isinstance(data, dict):
                names.update(keys_for(data))
            else:
                names.update(typ.model_fields)
    return names


def doc_path(data: Any, loc: Loc) -> Loc:
    """Map a pydantic location onto the document's keys.

    pydantic inserts the tag of a discriminated union (``accounts.x.mastodon.token``) and the
    name of a union member; steps that do not exist in the data are dropped, except a final
    one, which names a missing or unknown key.
    """
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        found, child = _child(current, part)
        if found:
            out.append(part)
            current = child
        elif i == len(loc) - 1:
            out.append(part)
    return tuple(out)


def _value_at(data: Any, path: Loc) -> Any:
    for part in path:
        found, data = _child(data, part)
        if not found:
            return None
    return data


def _child(container: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(container, dict) and part in container:
        return True, container[part]
    if isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container):
        return True, container[part]
    return False, None


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _key_name(loc: Loc) -> str:
    named = [str(p) for p in loc if isinstance(p, str)]
    return ".".join(named) if named else "the document"


def findings_from_validation_error(
    exc: ValidationError | list[ErrorDetails],
    doc: Document,
    model: type[BaseModel],
    *,
    post_id: str | None = None,
    account: str | None = None,
    to_doc: Callable[[Loc], Loc] | None = None,
) -> list[Finding]:
    """One finding per pydantic error, positioned in ``doc``.

    ``to_doc`` maps a location in the validated data to a path in ``doc`` (campaign packs
    merge shared fields into each post).
    """
    findings = []
    errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc
    for err in errors:
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        path = to_doc(loc) if to_doc else doc_path(doc.data, loc)
        hint = None
        if kind == "extra_forbidden":
            code, at, key = "unknown-key", path, True
            parent = loc[:-1]
            known = sorted(fields_at(model, parent, _value_at(doc.data, path[:-1])))
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            message = f"unknown key {str(loc[-1])!r}"
            if parent:
                message += f" in {_key_name(parent)}"
            if close:
                hint = f"did you mean {close[0]!r}?"
            elif known:
                hint = f"allowed here: {', '.join(known)}"
        elif kind == "missing":
            code, at, key = "missing-key", path[:-1], True
            message = f"missing required key {str(loc[-1])!r}"
            if len(loc) > 1:
                message += f" in {_key_name(loc[:-1])}"
            hint = _MISSING_HINTS.get(str(loc[-1]))
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") in _IN_WORDS:
            code, at, key = "invalid-value", path, False
            words = _IN_WORDS[err["ctx"]["pattern"]]
            message = f"{_key_name(loc)}: {err.get('input')!r} is not allowed: {words}"
        else:
            code, at, key = "invalid-value", path, False
            msg = err["msg"]
            if msg.startswith(("Value error, ", "Assertion failed, ")):
                msg = msg.split(", ", 1)[1]
            elif kind.endswith(("_type", "_parsing")) or kind == "model_type":
                msg = f"{msg[0].lower()}{msg[1:]}, got {_describe(err.get('input'))}"
            else:
                msg = msg[0].lower() + msg[1:]
            message = f"{_key_name(loc)}: {msg}" if loc else msg
        findings.append(
            error(
                code,
                message,
                hint=hint,
                post_id=post_id,
                account=account,
                **doc.where(at, key=key),
            )
        )
    return findings
