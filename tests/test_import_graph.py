"""The import graph of tusd_trio: no cycles, and the layers import only downwards.

Every ``import`` in every module counts, wherever it is written: at the top, inside a
function (a late import), under ``if TYPE_CHECKING:``.  A late or type-only import hides a
cycle from the interpreter, not from the next reader, so it is a cycle here too.

Edges: ``import a.b`` and ``from a import b`` where ``a.b`` is a module are edges to
``a.b``; ``from a.b import name`` (a name defined in ``a.b``) is an edge to ``a.b``.  A
package is its ``__init__``: importing ``tusd_trio.protocol`` is an edge to
``tusd_trio/protocol/__init__.py``.  Relative imports are resolved to module names.

Forbidden directions:

* ``tusd_trio.stores.*`` and ``tusd_trio.lockers.*`` import nothing of
  ``tusd_trio.server``, ``tusd_trio.config`` or ``tusd_trio.cli`` (storage knows nothing of
  the daemon around it);
* ``tusd_trio.protocol.*`` imports nothing of tusd_trio outside ``protocol/`` (the sans-IO
  core stands alone);
* a private server module (``tusd_trio.server._*``) is imported only from inside
  ``tusd_trio/server/``.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import tusd_trio

PACKAGE_DIR = Path(tusd_trio.__file__).resolve().parent


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line of the import statement


def module_names(root: Path) -> dict[str, Path]:
    """Every module under the package directory ``root``, by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_from(module: str, path: Path, level: int, name: str | None) -> str:
    """The absolute module named by ``from <level dots><name> import ...`` in ``module``."""
    if level == 0:
        assert name is not None
        return name
    package = module if _is_package(path) else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def _owning_module(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` if it is a module, else the longest module prefix of it (None outside)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges(root: Path) -> list[Edge]:
    """Every import edge between modules of the package directory ``root``."""
    modules = module_names(root)
    edges: list[Edge] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # every statement: top level, functions, TYPE_CHECKING
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    owner = _owning_module(alias.name, modules)
                    if owner is not None:
                        targets.append(owner)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_from(module, path, node.level, node.module)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    owner = submodule if submodule in modules else _owning_module(base, modules)
                    if owner is not None:
                        targets.append(owner)
            edges.extend(Edge(module, target, where) for target in dict.fromkeys(targets))
    return edges


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def forbidden(edge: Edge, root: str = "tusd_trio") -> str | None:
    """Why ``edge`` goes the wrong way, or None when it may exist."""
    source, target = edge.source, edge.target
    if _in(source, f"{root}.stores") or _in(source, f"{root}.lockers"):
        for upper in ("server", "config", "cli"):
            if _in(target, f"{root}.{upper}"):
                return f"stores and lockers import nothing of {root}.{upper}"
    if _in(source, f"{root}.protocol") and not _in(target, f"{root}.protocol"):
        return f"the protocol core imports nothing of {root} outside {root}.protocol"
    server = f"{root}.server"
    if _in(target, server) and not _in(source, server):
        rest = target[len(server) + 1 :].split(".") if target != server else []
        if any(part.startswith("_") for part in rest):
            return f"private server modules are imported only inside {server}"
    return None


def cycles(edges: Iterable[Edge]) -> list[tuple[list[str], list[str]]]:
    """Every strongly connected group of modules (more than one member, or one that imports
    itself) with one shortest cycle through its first member (a path a -> ... -> a)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    # Tarjan's strongly connected components, iteratively (no recursion limit).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph[node]:
                    groups.append(sorted(group))
    found = []
    for group in groups:
        members = set(group)
        first = group[0]
        # Breadth-first from the first member back to itself, inside the group.
        previous: dict[str, str] = {}
        frontier = [first]
        path: list[str] = []
        while frontier and not path:
            following = []
            for node in frontier:
                for nxt in sorted(graph[node] & members):
                    if nxt == first:
                        path = [first]
                        step = node
                        while step != first:
                            path.append(step)
                            step = previous[step]
                        path.append(first)
                        path.reverse()
                        break
                    if nxt not in previous:
                        previous[nxt] = node
                        following.append(nxt)
                if path:
                    break
            frontier = following
        found.append((group, path))
    return found


def violations(root: Path) -> list[str]:
    """Every cycle and every forbidden edge of the package directory ``root``, one line each."""
    edges = import_edges(root)
    lines = []
    by_pair: dict[tuple[str, str], list[str]] = {}
    for edge in edges:
        by_pair.setdefault((edge.source, edge.target), []).append(edge.where)
    for group, path in cycles(edges):
        steps = [f"{a} -> {b} ({', '.join(by_pair[(a, b)])})" for a, b in itertools.pairwise(path)]
        knot = f"{len(group)} modules import each other: {', '.join(group)}"
        lines.append("\n    ".join(["cycle: " + " -> ".join(path), *steps, knot]))
    for edge in edges:
        reason = forbidden(edge, root.name)
        if reason:
            lines.append(f"forbidden: {edge.source} -> {edge.target} ({edge.where}): {reason}")
    return lines


def test_tusd_trio_has_no_import_cycles_and_imports_only_downwards() -> None:
    found = violations(PACKAGE_DIR)
    assert not found, "\n" + "\n".join(found)


# --- the checker checks: a small package with every kind of violation ------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "tusd_trio"


CLEAN = {
    "tusd_trio/__init__.py": "",
    "tusd_trio/config.py": "from .protocol import core\nfrom .stores import base\n",
    "tusd_trio/protocol/__init__.py": "",
    "tusd_trio/protocol/core.py": "import json\nfrom . import info\nfrom .info import Info\n",
    "tusd_trio/protocol/info.py": "class Info: ...\n",
    "tusd_trio/stores/__init__.py": "from .base import Store\n",
    "tusd_trio/stores/base.py": "from ..protocol.info import Info\nclass Store: ...\n",
    "tusd_trio/server/__init__.py": "from ._app import Server\n",
    "tusd_trio/server/_app.py": "from ..config import x\nfrom ..stores import Store\n",
    "tusd_trio/cli.py": "from tusd_trio.server import Server\n",
}


def test_the_checker_accepts_a_clean_package(tmp_path: Path) -> None:
    root = _write(tmp_path, CLEAN)
    edges = {(e.source, e.target) for e in import_edges(root)}
    assert ("tusd_trio.protocol.core", "tusd_trio.protocol.info") in edges  # from . import info
    assert ("tusd_trio.config", "tusd_trio.protocol.core") in edges
    assert ("tusd_trio.cli", "tusd_trio.server") in edges  # a package is its __init__
    assert ("tusd_trio.server", "tusd_trio.server._app") in edges
    assert violations(root) == []


def test_the_checker_finds_hidden_cycles_and_forbidden_edges(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            **CLEAN,
            # A cycle held together by a late import and a TYPE_CHECKING import.
            "tusd_trio/auth.py": "def f():\n    from . import hooks\n",
            "tusd_trio/hooks.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from tusd_trio.auth import f\n"
            ),
            # A three-module cycle through a package's __init__.
            "tusd_trio/a/__init__.py": "from .one import x\n",
            "tusd_trio/a/one.py": "from ..b import y\n",
            "tusd_trio/b.py": "import tusd_trio.a\n",
            # Forbidden directions.
            "tusd_trio/stores/s3.py": "def g():\n    from ..config import x\n",
            "tusd_trio/lockers/__init__.py": "from tusd_trio.cli import main\n",
            "tusd_trio/protocol/bad.py": "from ..stores.base import Store\n",
            "tusd_trio/hooks2.py": "from .server._app import Server\n",
            "tusd_trio/server/_h2.py": "from ._app import Server\n",  # allowed: inside server
        },
    )
    found = violations(root)
    found_cycles = [line for line in found if line.startswith("cycle: ")]
    assert len(found_cycles) == 2, found
    late = next(line for line in found_cycles if "tusd_trio.auth" in line)
    assert late.startswith("cycle: tusd_trio.auth -> tusd_trio.hooks -> tusd_trio.auth\n")
    assert "tusd_trio/auth.py:2" in late and "tusd_trio/hooks.py:3" in late
    through_init = next(line for line in found_cycles if "tusd_trio.b" in line)
    assert through_init.startswith(
        "cycle: tusd_trio.a -> tusd_trio.a.one -> tusd_trio.b -> tusd_trio.a\n"
    )
    assert sorted(line.split(" (")[0] for line in found if line.startswith("forbidden")) == [
        "forbidden: tusd_trio.hooks2 -> tusd_trio.server._app",
        "forbidden: tusd_trio.lockers -> tusd_trio.cli",
        "forbidden: tusd_trio.protocol.bad -> tusd_trio.stores.base",
        "forbidden: tusd_trio.stores.s3 -> tusd_trio.config",
    ]
