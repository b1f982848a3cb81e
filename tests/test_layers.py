"""The house plan, enforced: no module imports a layer above its own, and no import circles.

Layers, bottom to top (docs/architecture.md explains each room). A module may import its own
layer and the ones below it; ``testing`` and ``fakeagent`` are test infrastructure on top.
Today most modules still sit flat at the package root, so only the circles are checked; the
move into the packages below is the layering issue's next step, and the upward-import check
comes with it (``LAYERS`` / ``layer_of`` are its table).
Every import counts, lazy ones inside functions and ``TYPE_CHECKING`` ones included: a
circle that only types see is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "agentbridge"
LAYERS = [
    "core",  # the modules at the package root: config, models, states, envelope, events, ...
    "ledger",
    "plugin",
    "agent",
    "runtimes",
    "delivery",
    "supervisor",
    "channels",
    "cli",
    "fakeagent",
    "testing",
]
COMPAT: set[str] = set()  # after the move: the old plugin-API paths, re-exports on top


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in COMPAT:
        return LAYERS[-1]
    parts = module.split(".")
    if len(parts) < 2:
        return "core"
    if parts[1] in LAYERS:
        return parts[1]
    return "core"  # a root module


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every agentbridge module ``path`` imports (``from agentbridge import x`` resolves to
    ``agentbridge.x`` when that is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            if len(names) < len(node.names):  # some names are attributes of ``base`` itself
                names.append(base)
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("agentbridge") and name != "agentbridge" and name != this:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) for name, path in files.items()}


def test_no_import_circles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"
