"""The package's layers: every import points down, so a reader can start at any folder.

The order is the one docs/architecture.md draws. A module may import its own package
and any lower layer, never a higher one and never a neighbour on its own layer (web and
worker, broker and wechat, cli and devtools know nothing of each other). Imports inside
functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "notifier"

# Higher imports lower; equal ranks are neighbours unless they are the same unit.
RANKS = {
    "notifier.errors": 0,
    "notifier.logs": 1,
    "notifier.signature": 1,
    "notifier.parsing": 2,
    "notifier.config": 3,
    "notifier.client": 4,
    "notifier.broker": 4,
    "notifier.wechat": 4,
    "notifier.store": 5,
    "notifier.processes": 5,
    "notifier.web": 6,
    "notifier.worker": 6,
    "notifier.devtools": 7,
    "notifier.cli": 8,
}
# Frameworks each layer must not touch: the WeChat client knows neither Flask nor Celery,
# the stores know no framework, the tasks know no Flask and the views no Celery.
FORBIDDEN = {
    "notifier.wechat": ("flask", "celery", "kombu", "redis"),
    "notifier.store": ("flask", "celery"),
    "notifier.worker": ("flask",),
    "notifier.web": ("celery", "kombu"),
}


def unit(module: str) -> str:
    """The layer a module belongs to: its subpackage, or itself for a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "notifier":
                found.update(f"notifier.{alias.name}" for alias in node.names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unplaced = (
        {unit(module_name(p)) for p in MODULES} - set(RANKS) - {"notifier", "notifier.__main__"}
    )
    assert not unplaced, f"give these a rank in RANKS and docs/architecture.md: {unplaced}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    name = module_name(path)
    own = unit(name)
    if own not in RANKS:
        return  # notifier/__init__.py and __main__.py sit above everything
    upward = []
    for target in imports(path):
        if not target.startswith("notifier."):
            continue
        other = unit(target)
        if other != own and RANKS.get(other, 99) >= RANKS[own]:
            upward.append(target)
    assert not upward, f"{name} imports from its own layer or above: {sorted(upward)}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_frameworks_stay_in_their_layers(layer: str) -> None:
    wrong = {
        f"{module_name(path)} imports {target}"
        for path in MODULES
        if unit(module_name(path)) == layer
        for target in imports(path)
        if target.split(".")[0] in FORBIDDEN[layer]
    }
    assert not wrong, sorted(wrong)


def test_no_module_reaches_300_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) >= 300
    }
    assert not long, f"split these: {long}"
