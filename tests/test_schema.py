"""The editor schema (`postscheduler schema`) accepts what postscheduler accepts: every example
file and README snippet passes it, and a typo is caught by it as by validate."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from postscheduler.cli import schema_text
from postscheduler.posts.yamlsource import parse_yaml

from .conftest import PROJECT_ROOT

SCHEMA = __import__("json").loads(schema_text())
EXAMPLES = sorted((PROJECT_ROOT / "posts").glob("*.yaml"))


def _readme_post_snippets() -> list[str]:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    return [b for b in blocks if b.startswith("# yaml-language-server")]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_file_passes_the_schema(path: Path) -> None:
    data = parse_yaml(path.read_text(encoding="utf-8"), path).data
    jsonschema.validate(data, SCHEMA)


def test_every_readme_post_snippet_passes_the_schema() -> None:
    snippets = _readme_post_snippets()
    assert snippets, "the README shows a post file"
    for text in snippets:
        jsonschema.validate(parse_yaml(text, Path("README.md")).data, SCHEMA)


def test_the_schema_refuses_what_validate_refuses() -> None:
    for bad in (
        {"id": "p", "at": "2027-01-14 09:00", "txt": "typo"},
        {"id": "p", "at": "2027-03-10", "text": "a day, no time"},
        {"id": "p", "at": "2027-01-14 09:00", "image": {"file": "a.jpg", "alt": "A."}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
