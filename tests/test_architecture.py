"""The arrows of the design, checked from the source: `tradesim/` never imports `strategies/`
(strategies are plug-ins found through entry points), and no two modules import each other,
directly or around a loop, counting every import statement (function-local ones too) except
those only type checkers read (`if TYPE_CHECKING:`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tradesim", "strategies")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node, skipping the bodies of `if TYPE_CHECKING:`."""
    waiting = [tree]
    while waiting:
        node = waiting.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                waiting.extend(child.orelse)
                continue
            waiting.append(child)


def imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """For each module, the modules of the two packages it imports (its own package's __init__ aside)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_tradesim_never_imports_strategies():
    graph = imports(_modules())
    wrong = {name: sorted(t for t in targets if t.split(".")[0] == "strategies") for name, targets in graph.items() if name.startswith("tradesim")}
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_market_data_knows_no_strategy_or_model():
    graph = imports(_modules())
    banned = ("strategies", "tradesim.strategy", "tradesim.llm", "tradesim.models", "tradesim.learned", "tradesim.backtesting")
    wrong = {
        name: sorted(t for t in targets if t.startswith(banned))
        for name, targets in graph.items() if name.startswith("tradesim.market")
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_no_import_cycles():
    assert cycles(imports(_modules())) == []


def test_the_checks_see_what_they_look_for(tmp_path):
    """The walker finds a function-local import, a relative one and a loop, and skips TYPE_CHECKING."""
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import c\ndef f():\n    import b\n")
    (tmp_path / "b.py").write_text("from a import f\n")
    (tmp_path / "c.py").write_text("import a\n")
    graph = imports({name: tmp_path / f"{name}.py" for name in "abc"})
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
