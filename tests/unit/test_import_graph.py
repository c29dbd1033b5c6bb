"""The package's layers point one way and its modules form no import cycle.

Read from the source (ast), counting every import: top-level, deferred inside a function, and
under ``if TYPE_CHECKING``. A deferred or type-only import still ties two modules together: the
cycle is in the design even when Python can load it.

``api`` ← ``render`` (pure) ← ``controller``; the agents use ``api`` and the shared pure modules,
never the controller; nothing in the product imports the local test cluster.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "onair"

# layer -> layers it must never import
FORBIDDEN = {
    "api": {"render", "controller", "agent", "localcluster", "packaging"},
    "render": {"controller", "agent", "localcluster", "packaging"},
    "agent": {"controller", "localcluster", "packaging"},
    "controller": {"agent", "localcluster", "packaging"},
    # The one Kubernetes client: everyone's, so it depends on nobody's layer.
    "kube": {"render", "controller", "agent", "localcluster", "packaging"},
}

# Known debts, each to be paid off (the test fails once one is gone, so this list only shrinks).
KNOWN_LAYER_BREACHES: set[tuple[str, str]] = set()
KNOWN_CYCLES = [
    # uploads reaches into the origin agent's internals (type-only import back).
    {"onair.agent.origin.server", "onair.agent.origin.uploads"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(module: str, path: Path, modules: set[str]) -> set[str]:
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
            names = [
                f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {m: _imports(m, p, modules) for m, p in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_cycle_finder_sees_a_cycle_through_a_deferred_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_deferred_and_type_only_imports():
    graph = import_graph()
    # `from .agent_client import ...` at the top of a controller module
    assert "onair.controller.agent_client" in graph["onair.controller.runtime"]
    # `from onair.api import webhooks as api`: a module imported from its package
    assert "onair.api.webhooks" in graph["onair.controller.webhooks"]


def test_no_layer_imports_one_it_must_not():
    breaches = {(m, d) for m, deps in import_graph().items() for d in deps if _layer(d) in FORBIDDEN.get(_layer(m), ())}
    new = breaches - KNOWN_LAYER_BREACHES
    assert not new, f"imports against the layers (api <- render <- controller; agents never the controller): {new}"
    paid = KNOWN_LAYER_BREACHES - breaches
    assert not paid, f"fixed, so remove from KNOWN_LAYER_BREACHES: {paid}"


@pytest.mark.parametrize("layer", sorted({"api", "render", "controller", "agent", "localcluster"}))
def test_no_import_cycle(layer):
    found = [c for c in cycles(import_graph()) if any(_layer(m) == layer for m in c)]
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new} (move what both need into a module of its own, or pass it in)"
    paid = [c for c in KNOWN_CYCLES if any(_layer(m) == layer for m in c) and c not in found]
    assert not paid, f"fixed, so remove from KNOWN_CYCLES: {paid}"


# A line tested for an HLS tag, a tag looked up in the text, or the m3u8 library imported.
_PLAYLIST_READING = re.compile(
    r"""startswith\(\s*f?["']#EXT|["']#EXT[-A-Z]*["']\s+(?:not\s+)?in\s|^\s*(?:import|from)\s+m3u8""", re.MULTILINE
)


def test_only_the_hls_module_reads_playlists():
    """One HLS reader (``agent/hls.py``, on m3u8): a module reading tags itself is a second one."""
    shared = PACKAGE / "agent" / "hls.py"
    readers = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != shared and _PLAYLIST_READING.search(path.read_text())
    ]
    assert readers == [], "read playlists with onair.agent.hls instead"
    assert _PLAYLIST_READING.search(shared.read_text())  # the pattern still finds a reader
