"""The platforms postscheduler publishes to: one module each, and this registry.

Each module (``platforms/<name>.py``) holds everything offline about its platform: the
account model of ``scheduler.yaml``, the limits, how text is counted and links are shown, and
how a rendered part is really sent; it ends with ``PLATFORM``. Its HTTP side is
``publishers/<name>.py``. Config, rules, render, the CLI and the publishers all read this one
registry, so adding a platform is adding those two modules (and tests, and the README's
credentials), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import AccountConfig, Measure, Message, Platform, TextLimit

__all__ = [
    "PLATFORMS",
    "AccountConfig",
    "Measure",
    "Message",
    "Platform",
    "TextLimit",
    "get_platform",
]

_NOT_PLATFORMS = frozenset({"base", "counting"})


def _discover() -> dict[str, Platform]:
    """Every module of this package that declares a ``PLATFORM``, by name: a new platform
    needs no line here."""
    found: dict[str, Platform] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name in _NOT_PLATFORMS or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        platform: Platform = module.PLATFORM
        if platform.name != module_info.name:
            raise ImportError(f"platforms/{module_info.name}.py declares {platform.name!r}")
        found[platform.name] = platform
    return found


PLATFORMS: dict[str, Platform] = _discover()


def get_platform(name: str) -> Platform:
    return PLATFORMS[name]
