"""The layout holds: every platform is complete, and modules depend one way only.

Adding a platform is adding ``platforms/<name>.py`` and ``publishers/<name>.py`` (with tests
and the README's credentials); these tests fail when one of those pieces is missing or when a
module reaches back up the chain (an offline module importing the network side).
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from postscheduler.platforms import PLATFORMS, AccountConfig
from postscheduler.publishers import Publisher, publisher_class

PACKAGE = Path(__file__).parent.parent / "src" / "postscheduler"
README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(PLATFORMS))
def test_every_platform_has_a_model_limits_a_publisher_and_credentials(name: str) -> None:
    spec = PLATFORMS[name]
    assert spec.name == name
    assert issubclass(spec.account_model, AccountConfig)
    # The account model answers to exactly this platform name in scheduler.yaml.
    annotation = spec.account_model.model_fields["platform"].annotation
    assert typing.get_args(annotation) == (name,)
    assert (PACKAGE / "platforms" / f"{name}.py").is_file()
    # Limits are declared (an empty tuple means "none of its own", as the outbox has).
    assert isinstance(spec.text_limits, tuple)
    assert spec.measure("Hello, Perú ✊🏽"), "measure must always give a count"
    cls = publisher_class(name)
    assert issubclass(cls, Publisher) and cls.platform == name
    assert cls.__module__ == f"postscheduler.publishers.{name}"
    assert f"- **{spec.label}** (`platform: {name}`)" in README, "README: Getting credentials"


def _imports(path: Path) -> set[str]:
    """Every postscheduler module ``path`` imports, at the top or inside a function."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
            found.update(n for n in names if n.startswith("postscheduler"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("postscheduler"))
    return found


# Who may import whom: each layer only what is below it.
OFFLINE = ("postscheduler.posts", "postscheduler.platforms")
FORBIDDEN = {
    "postscheduler.posts": ("delivery", "publishers", "ledger", "cli"),
    "postscheduler.platforms": ("delivery", "publishers", "ledger", "cli"),
    "postscheduler.config": ("delivery", "publishers", "ledger", "cli"),
    "postscheduler.errors": ("delivery", "publishers", "ledger", "cli", "posts", "platforms"),
    "postscheduler.ledger": ("delivery", "publishers", "cli", "posts", "platforms"),
    "postscheduler.publishers": ("delivery", "cli"),
    "postscheduler.delivery": ("cli",),
}


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_imports_go_one_way(path: Path) -> None:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    rules = [v for k, v in FORBIDDEN.items() if module == k or module.startswith(k + ".")]
    for forbidden in (f for rule in rules for f in rule):
        bad = sorted(i for i in _imports(path) if i.startswith(f"postscheduler.{forbidden}"))
        assert not bad, f"{module} must not import {forbidden}: {bad}"


def test_offline_modules_need_no_network_stack() -> None:
    """Importing everything offline pulls in no HTTP client, scheduler or publisher."""
    import subprocess
    import sys

    modules = sorted(
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for pkg in OFFLINE
        for p in (PACKAGE / pkg.split(".")[1]).glob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'apscheduler')"
        " or m.startswith(('postscheduler.publishers', 'postscheduler.delivery',"
        " 'postscheduler.ledger')))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
