"""The protocol core is sans-IO: it may import only the standard library and itself."""

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
    if level > 0:
        return True
    if module == "tusd_trio.protocol" or module.startswith("tusd_trio.protocol."):
        return True
    return module.split(".", 1)[0] in sys.stdlib_module_names


def test_the_package_has_the_expected_modules() -> None:
    names = {path.name for path in MODULES}
    assert {"__init__.py", "errors.py", "headers.py", "info.py", "core.py"} <= names


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
