"""The house plan, enforced: no module imports a layer above its own, and no import circles.

Layers, bottom to top (docs/architecture.md explains each room). A module may import its own
layer and the ones below it; ``testing`` and ``fakeagent`` are test infrastructure on top.
Every import counts, lazy ones inside functions and ``TYPE_CHECKING`` ones included: a
circle that only types see is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
COMPAT = {"agentbridge.hookspecs", "agentbridge.protocols"}  # old plugin-API paths: re-exports
ROOT_LIMIT = 12  # "no more than a dozen modules left at the package root"
MAX_LINES = 450
#: modules still over the limit when the move landed: they may shrink, never grow (to be split)
OVER_LIMIT = {}


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


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{mod} ({layer_of(mod)}) imports {dep} ({layer_of(dep)})"
        for mod, deps in sorted(graph().items())
        for dep in sorted(deps)
        if LAYERS.index(layer_of(dep)) > LAYERS.index(layer_of(mod))
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


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


def test_only_the_ledger_imports_sqlite() -> None:
    """Only ``agentbridge.ledger`` may know the database driver (row types included), so a
    second backend replaces one package. Every import counts, lazy and ``TYPE_CHECKING`` too."""
    drivers = {"sqlite3", "aiosqlite"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if module_name(path).startswith("agentbridge.ledger"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [
                f"{path.relative_to(SRC)}:{node.lineno} imports {name}"
                for name in names
                if name.partition(".")[0] in drivers
            ]
    assert not found, "\n".join(found)


def test_package_root_holds_at_most_a_dozen_modules() -> None:
    root = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert len(root) <= ROOT_LIMIT, root


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_module_is_at_most_450_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    limit = OVER_LIMIT.get(str(path.relative_to(SRC)), MAX_LINES)
    assert lines <= limit, f"{path.relative_to(SRC)}: {lines} lines"


def test_old_plugin_import_paths_still_resolve() -> None:
    """Plugins written before the move import these paths; they must get the same objects."""
    from agentbridge import hookspecs, protocols
    from agentbridge.ledger import IngestResult, Ledger
    from agentbridge.ledger.sqlite import Ledger as SqliteLedger
    from agentbridge.ledger.store import IngestResult as StoreIngestResult
    from agentbridge.plugin import hookspecs as new_hookspecs
    from agentbridge.plugin import protocols as new_protocols

    assert hookspecs.hookimpl is new_hookspecs.hookimpl
    for name in ("Channel", "ChannelContext", "DeliveryError", "ErrorClass"):
        assert getattr(protocols, name) is getattr(new_protocols, name)
    assert Ledger is SqliteLedger and IngestResult is StoreIngestResult
