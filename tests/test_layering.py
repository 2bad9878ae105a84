"""The package's import direction, read from the source (``ast``, nothing imported).

Library modules never import the command line (``deepmac_nb.cli``, any ``*_cli``
module) or the demo runner; those (and the notebooks) may import anything. No import
cycle among ``deepmac_nb`` modules, counting imports inside functions too.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deepmac_nb"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_frontend(module: str) -> bool:
    """The command line and the demo runner: allowed to import anything."""
    leaf = module.rsplit(".", 1)[-1]
    return module in ("deepmac_nb.cli", "deepmac_nb.demo") or leaf.endswith("_cli")


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every ``deepmac_nb`` module ``path`` imports, at any depth (functions included).

    ``from deepmac_nb.x import y`` counts as importing ``deepmac_nb.x.y`` when that is a
    module, else ``deepmac_nb.x``; relative imports are resolved against ``module``.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [n if n in known else base for n in names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] == "deepmac_nb" and n in known)
    found.discard(module)
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: _imports(path, name, known) for name, path in paths.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_scanner_sees_function_level_and_relative_imports(tmp_path):
    # The checks below can only fail if the scanner finds imports where they hide.
    known = {"deepmac_nb", "deepmac_nb.cli", "deepmac_nb.train", "deepmac_nb.train.runner"}
    source = tmp_path / "runner.py"
    source.write_text(
        "def f():\n    from deepmac_nb.cli import CliError\n"
        "def g():\n    from . import runner\n    import deepmac_nb.train\n"
    )
    found = _imports(source, "deepmac_nb.train.x", known)
    assert found == {"deepmac_nb.cli", "deepmac_nb.train.runner", "deepmac_nb.train"}
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_library_modules_do_not_import_the_command_line_or_the_demo():
    graph = _graph()
    assert "deepmac_nb.train.runner" in graph and "deepmac_nb.cli" in graph
    bad = {
        module: sorted(dep for dep in deps if _is_frontend(dep))
        for module, deps in graph.items()
        if not _is_frontend(module)
    }
    bad = {module: deps for module, deps in bad.items() if deps}
    assert not bad, f"library modules importing CLI/demo modules: {bad}"


def test_no_import_cycle_among_package_modules():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["deepmac_nb.errors", "deepmac_nb._io"])
def test_bottom_layer_imports_nothing_from_the_package(module):
    assert _graph()[module] == set()
