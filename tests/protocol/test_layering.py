"""The protocol core is sans-IO: it may import only the standard library and itself,
and its modules import each other without a cycle."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import tusd_trio.protocol

PACKAGE_DIR = Path(tusd_trio.protocol.__file__).parent
MODULES = sorted(PACKAGE_DIR.rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) for every import statement in ``path``; level > 0 is relative."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def _allowed(level: int, module: str) -> bool:
    if level == 1:  # the package has no subpackages: ".." leaves it
        return True
    if level > 1:
        return False
    if module == "tusd_trio.protocol" or module.startswith("tusd_trio.protocol."):
        return True
    return module.split(".", 1)[0] in sys.stdlib_module_names


def test_the_package_has_the_expected_modules() -> None:
    names = {path.name for path in MODULES}
    assert {
        "__init__.py",
        "config.py",
        "messages.py",
        "errors.py",
        "headers.py",
        "info.py",
        "routing.py",
        "creation.py",
        "writes.py",
        "interop.py",
        "ietf.py",
    } <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_stdlib_or_the_protocol_package(path: Path) -> None:
    offending = [module for level, module in _imports(path) if not _allowed(level, module)]
    assert offending == []


@pytest.mark.parametrize(
    ("level", "module", "allowed"),
    [
        (0, "json", True),
        (0, "email.utils", True),
        (1, "errors", True),
        (1, "", True),
        (2, "config", False),
        (2, "", False),
        (0, "tusd_trio.protocol.errors", True),
        (0, "trio", False),
        (0, "h11", False),
        (0, "tusd_trio.server", False),
        (0, "tusd_trio", False),
        (0, "tusd_trio.protocolx", False),
    ],
)
def test_import_rule(level: int, module: str, allowed: bool) -> None:
    assert _allowed(level, module) is allowed


def test_import_collector_sees_every_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import a.b, c\nfrom d import e\nfrom . import f\nfrom ..g import h\n"
        "def fn():\n    import lazy\n",
        encoding="utf-8",
    )
    assert sorted(_imports(source)) == [
        (0, "a.b"),
        (0, "c"),
        (0, "d"),
        (0, "lazy"),
        (1, ""),
        (2, "g"),
    ]


def _sibling_imports(path: Path) -> set[str]:
    """The protocol modules ``path`` imports (at the top, in functions or under
    TYPE_CHECKING alike)."""
    siblings = {p.stem for p in MODULES} - {"__init__"}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".", 1)[0])
            else:
                found |= {alias.name for alias in node.names if alias.name in siblings}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["tusd_trio", "protocol"]:
                if len(parts) > 2:
                    found.add(parts[2])
                else:
                    found |= {alias.name for alias in node.names if alias.name in siblings}
    return found & siblings


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_protocol_modules_import_each_other_without_a_cycle() -> None:
    graph = {path.stem: _sibling_imports(path) for path in MODULES if path.stem != "__init__"}
    assert _cycle(graph) is None
    # The draft's table sits below the decisions that use it.
    assert "ietf" not in graph["routing"] and "ietf" not in graph["interop"]


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_sibling_imports_see_every_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nfrom . import errors, config\nfrom .info import X\n"
        "if TYPE_CHECKING:\n    from .ietf import Y\n"
        "def fn():\n    from tusd_trio.protocol.routing import route\n"
        "    from tusd_trio.protocol import urls\n",
        encoding="utf-8",
    )
    assert _sibling_imports(source) == {"errors", "config", "info", "ietf", "routing", "urls"}
