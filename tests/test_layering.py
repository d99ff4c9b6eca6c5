"""The engine's import graph: no circle among module-level imports, no import of the built-in adapters.

Plugins reach the registry through the `benchmark.adapters` entry point, so nothing in `benchmark/` names
`adapters`; imports inside functions are lazy by design (heavy libraries, plugin kinds) and do not count
towards circles."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "benchmark"


def module_imports() -> dict[str, set[str]]:
    """Module name -> the modules (and `module.name` forms) its top-level statements import."""
    out: dict[str, set[str]] = {}
    for file in sorted(ROOT.rglob("*.py")):
        parts = file.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                deps.add(module)
                deps.update(f"{module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        out[name] = deps
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                found.append(path[path.index(d):] + [m, d] if d in path else [m, d])
            elif d not in state:
                visit(d, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return found


def engine_graph() -> dict[str, set[str]]:
    """Module -> the engine modules importing it runs at module level: each one named, and the packages above
    it (importing `benchmark.metrics.context` first runs `benchmark/metrics/__init__.py`)."""
    imports = module_imports()
    graph: dict[str, set[str]] = {}
    for m, deps in imports.items():
        edges = set()
        for d in deps:
            parts = d.split(".")
            edges.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[m] = {d for d in edges if d in imports and d != m and not m.startswith(d + ".")}
    return graph


def module_level_closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_no_module_level_import_circle_in_the_engine():
    graph = engine_graph()
    assert len(graph) > 30 and cycles(graph) == []
    assert "benchmark.metrics" in graph["benchmark.evaluation"]  # the package edge is in the graph


def test_the_registry_imports_no_plugin_at_module_level():
    """Plugins import the registry; the registry reaches them only through the entry points."""
    closure = module_level_closure(engine_graph(), "benchmark.registry")
    assert {"benchmark.needs", "benchmark.specs", "benchmark.errors"} <= closure
    assert not any(m == "benchmark.metrics" or m.startswith("benchmark.metrics.") for m in closure)
    assert not any(d.split(".")[0] == "adapters" for m in closure for d in module_imports()[m])
    assert {"torch", "numpy"}.isdisjoint({d.split(".")[0] for m in closure for d in module_imports()[m]})


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) != []


def test_the_engine_never_imports_the_adapters():
    named = [f"{f.relative_to(ROOT.parent)}:{i}" for f in sorted(ROOT.rglob("*.py"))
             for i, line in enumerate(f.read_text().splitlines(), 1)
             if line.strip().startswith(("import adapters", "from adapters")) or "import_module(\"adapters" in line
             or "import_module('adapters" in line]
    assert named == []
    assert "adapters" not in {d.split(".")[0] for deps in module_imports().values() for d in deps}
