"""The library's import structure: no import cycle among its modules, and every import of a library module inside a
function says why it is not at the top (a comment naming the cycle or the cost it avoids)."""
from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "dfmvr_lib"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIBRARY.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> dict[str, Path]:
    return {module_name(path): path for path in LIBRARY.rglob("*.py")}


def imported_module(importer: str, is_package: bool, node: ast.ImportFrom, name: str, modules) -> str | None:
    """The library module that ``from ... import name`` in ``importer`` loads (the submodule when ``name`` is
    one, else the module or package named after ``from``), or None for other libraries."""
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    elif node.module and node.module.split(".")[0] == "dfmvr_lib":
        target = node.module
    else:
        return None
    return f"{target}.{name}" if f"{target}.{name}" in modules else target


def top_level_statements(tree: ast.Module):
    """Statements run when the module loads (``if TYPE_CHECKING:`` blocks excluded)."""
    for node in tree.body:
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                yield from node.body
                yield from node.orelse
        elif isinstance(node, ast.Try):
            yield from node.body
        else:
            yield node


def import_graph() -> dict[str, set[str]]:
    """Module -> the library modules its module-level statements import."""
    modules = library_modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in top_level_statements(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    target = imported_module(name, path.name == "__init__.py", node, alias.name, modules)
                    if target in modules and target != name:
                        edges.add(target)
            elif isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules and alias.name != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. the import cycles."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["dfmvr_lib.losses"]        # the graph was read
    assert cycles(graph) == []


def test_every_library_import_inside_a_function_says_why():
    unexplained = []
    for path in LIBRARY.rglob("*.py"):
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = function.body
            for position, node in enumerate(body):
                library = isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                    "dfmvr_lib"))
                if not library:
                    continue
                first = position                         # the group of imports this one belongs to
                while first > 0 and isinstance(body[first - 1], (ast.Import, ast.ImportFrom)):
                    first -= 1
                start = body[first].lineno
                group = lines[start - 2:node.end_lineno]     # the line above the group, the group up to here
                if not any("#" in line for line in group):
                    unexplained.append(f"{path.relative_to(LIBRARY.parent)}:{node.lineno}")
    assert unexplained == [], "library imports inside functions without a comment naming the cycle or the cost"


def test_parallel_kernels_run_without_a_threading_layer_warning():
    """A process that imports the library and open3d (whose bundled TBB is too old for numba) and then launches a
    numba parallel kernel prints no NumbaWarning (numba's default order tries TBB first: it warned in every
    notebook) and runs on OpenMP."""
    import pytest

    pytest.importorskip("open3d")
    import os
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('error')\n"
            "import dfmvr_lib, open3d, numba, numpy as np\n"
            "@numba.njit(parallel=True)\n"
            "def total(a):\n"
            "    s = 0.0\n"
            "    for i in numba.prange(a.size):\n"
            "        s += a[i]\n"
            "    return s\n"
            "assert total(np.ones(64)) == 64.0\n"
            "print(numba.threading_layer())\n")
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER_PRIORITY"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                            cwd=LIBRARY.parent, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NumbaWarning" not in result.stderr
    assert result.stdout.strip() == "omp"
