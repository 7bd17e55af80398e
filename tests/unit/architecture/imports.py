"""The import graph of a package tree, read with ``ast``, and the house rules checked on it.

The rules (ARCHITECTURE.md, "Layers and folders"; docs/architecture.md):

1. **Layers**: a module may import its own layer and the layers below it, never a layer above
   it nor a sibling of its own rank. ``__main__`` modules are entry points and exempt.
2. **No private names across layers**: ``from infergy.a.b import _x``, an import of a private
   module (``infergy.formats._x``) or ``mod._x`` on an imported module, from another layer.
3. **No import loops** between modules, counting every import (also those inside functions and
   under ``TYPE_CHECKING``): a loop is a design knot even when Python tolerates it.

One more entry point besides ``__main__``: the package root's **lazy public re-exports**. The
root ``__init__`` may import public names of any layer inside its module-level ``__getattr__``
(PEP 562) and its module-level ``if TYPE_CHECKING:`` block, so ``infergy.Measurement`` works
while ``import infergy`` imports nothing. Those imports run only on attribute access, after
every layer is importable, so they sit above everything like ``__main__`` (no layer rule, no
loop); they must name public names (rule 2 still applies). Anywhere else, the same imports
are ordinary imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

LAYERS: Mapping[str, int] = {
    "": 0,  # infergy/__init__.py: the version, nothing else
    "errors": 0,
    "core": 1,
    "formats": 2,
    "config": 3,
    "store": 3,
    "meters": 4,
    "runners": 4,
    "ptd_bridge": 4,
    "exporters": 5,
    "maxq": 6,
    "daemon": 7,
    "cli": 8,
}
"""Rank of each top-level part of ``infergy``: higher ranks may import lower ones."""


@dataclass(frozen=True)
class Edge:
    """One import: ``src`` imports ``dst`` (module names), at ``path:line``."""

    src: str
    dst: str
    names: tuple[str, ...]
    path: str
    line: int


@dataclass
class Graph:
    """Every module of a tree and its imports of the same tree."""

    root: str
    modules: dict[str, Path] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    private_uses: list[Edge] = field(default_factory=list)  # ``mod._x`` attribute uses
    lazy_exports: list[Edge] = field(default_factory=list)  # the root's lazy re-exports


def module_name(root_dir: Path, path: Path) -> str:
    """``infergy/core/trace.py`` -> ``infergy.core.trace``; a package's ``__init__`` is itself."""
    parts = list(path.relative_to(root_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def read_graph(root_dir: Path) -> Graph:
    """Parse every ``.py`` file under ``root_dir`` (the package folder) into a :class:`Graph`."""
    root = root_dir.name
    graph = Graph(root)
    files = sorted(root_dir.rglob("*.py"))
    for path in files:
        graph.modules[module_name(root_dir, path)] = path
    for path in files:
        src = module_name(root_dir, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_aliases: dict[str, str] = {}
        lazy = _lazy_nodes(tree) if src == root else set()
        for node in ast.walk(tree):
            edges = graph.lazy_exports if id(node) in lazy else graph.edges
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        edges.append(Edge(src, alias.name, (), str(path), node.lineno))
                        module_aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                dst = _resolve(node, src, path.name == "__init__.py")
                if not (dst == root or dst.startswith(root + ".")):
                    continue
                for alias in node.names:
                    sub = f"{dst}.{alias.name}"
                    if sub in graph.modules:  # ``from pkg import module``
                        edges.append(Edge(src, sub, (), str(path), node.lineno))
                        module_aliases[alias.asname or alias.name] = sub
                    else:
                        edges.append(Edge(src, dst, (alias.name,), str(path), node.lineno))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
                and _private(node.attr)
            ):
                dst = module_aliases[node.value.id]
                graph.private_uses.append(Edge(src, dst, (node.attr,), str(path), node.lineno))
    return graph


def _lazy_nodes(tree: ast.Module) -> set[int]:
    """Nodes inside the module-level ``def __getattr__`` and ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for stmt in tree.body:
        lazy_def = isinstance(stmt, ast.FunctionDef) and stmt.name == "__getattr__"
        typing_only = isinstance(stmt, ast.If) and (
            (isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING")
            or (isinstance(stmt.test, ast.Attribute) and stmt.test.attr == "TYPE_CHECKING")
        )
        if lazy_def:
            out.update(id(n) for n in ast.walk(stmt))
        elif typing_only:
            assert isinstance(stmt, ast.If)
            out.update(id(n) for b in stmt.body for n in ast.walk(b))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_of(module: str) -> str:
    """The top-level part a module belongs to (``infergy.core.trace`` -> ``core``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: Graph, layers: Mapping[str, int] = LAYERS) -> list[str]:
    """Imports of a higher layer or a same-rank sibling; unknown top-level parts."""
    out = []
    parts = {layer_of(m) for m in graph.modules if not m.endswith(".__main__")}
    for part in sorted(parts - set(layers)):
        out.append(f"{graph.root}.{part} has no layer: add it to LAYERS and docs/architecture.md")
    for e in graph.edges:
        if e.src.endswith(".__main__"):
            continue  # entry points sit above everything
        a, b = layer_of(e.src), layer_of(e.dst)
        if a == b or a not in layers or b not in layers:
            continue
        if layers[b] >= layers[a]:
            why = "a higher layer" if layers[b] > layers[a] else "a sibling layer"
            out.append(f"{e.path}:{e.line}: {e.src} imports {e.dst} ({why}: {a} -> {b})")
    return out


def private_violations(graph: Graph) -> list[str]:
    """Private names or modules used from another layer."""
    out = []
    for e in [*graph.edges, *graph.private_uses, *graph.lazy_exports]:
        if layer_of(e.src) == layer_of(e.dst):
            continue
        private_module = any(_private(p) for p in e.dst.split("."))
        names = [n for n in e.names if _private(n)]
        if private_module or names:
            what = ", ".join(names) if names else "a private module"
            out.append(f"{e.path}:{e.line}: {e.src} uses {what} of {e.dst}")
    return out


def import_loops(graph: Graph) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each sorted."""
    succ: dict[str, set[str]] = {m: set() for m in graph.modules}
    for e in graph.edges:
        if e.dst in succ and e.src != e.dst:
            succ[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~150)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return loops


def all_violations(graph: Graph, layers: Mapping[str, int] = LAYERS) -> list[str]:
    """Every broken rule, one line each (empty: the tree keeps the house rules)."""
    loops = [" -> ".join(c) for c in import_loops(graph)]
    return [
        *layer_violations(graph, layers),
        *private_violations(graph),
        *(f"import loop: {c}" for c in loops),
    ]


def write_tree(root_dir: Path, files: Iterable[tuple[str, str]]) -> Path:
    """Write a small package tree (``("core/x.py", "source")`` pairs) for the rules' own tests."""
    for rel, text in files:
        path = root_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in [root_dir, *(p for p in root_dir.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root_dir
