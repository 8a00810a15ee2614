"""The import graph of minifreeze/: no cycle, and no command importing another (issue 18).

A command is a module with a top-level `def main` (what `python -m minifreeze.<command>` runs). Commands
sit on top of the library: the library never imports a command, and a command imports the library only,
never another command. That is how the cycles started here (train imported evaluate's scorer while
evaluate imported train's device helpers). Shared code moves down into a library module instead
(runtime.py, scoring.py). The graph is read from the source with `ast`, lazy imports inside functions
included: a lazy import still closes a cycle, it only hides it until that function runs.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minifreeze"

# Command -> command imports allowed, each with its reason.
ALLOWED = {
    # A sweep is training runs: each grid point is train.train(train.TrainConfig(...)), in-process so that
    # the frozen cache stays warm between runs. train.train is the library entry of training.
    ("sweep", "train"),
}
# Edges that exist today and are wrong, each waiting for the change that removes it. A test below fails
# once an edge here is gone, so that its line is deleted and the rule applies to it again.
PENDING: set[tuple[str, str]] = set()  # cache -> cache_admin went when cache/ became a package


def module_name(path: Path) -> str:
    """minifreeze/sweep/report.py -> "sweep.report"; a package's __init__.py is the package; the root is ""."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def runtime_imports(tree: ast.AST):
    """Every import statement, also inside functions, except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from runtime_imports(node)


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The minifreeze modules that importing `name` runs (a submodule runs its packages first)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            bases = [a.name.removeprefix("minifreeze").lstrip(".") for a in node.names]
            targets |= {b for a, b in zip(node.names, bases) if a.name.split(".")[0] == "minifreeze"}
            continue
        if node.level:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = ".".join(filter(None, [base, node.module]))
        elif (node.module or "").split(".")[0] == "minifreeze":
            base = node.module.removeprefix("minifreeze").lstrip(".")
        else:
            continue
        for alias in node.names:  # `from . import cli` imports the module cli; `from .x import y` runs x
            sub = ".".join(filter(None, [base, alias.name]))
            targets.add(sub if sub in known else base)
    # The root package is running already whenever one of its modules is imported: no edge to it, unless
    # a module imports a name it defines.
    with_packages = set(targets)
    for target in targets:
        parts = target.split(".")
        with_packages |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return with_packages - {name}


def graph() -> dict[str, set[str]]:
    found = modules()
    edges = {name: imported(name, path, set(found)) for name, path in found.items()}
    return {name: {t for t in targets if (name, t) not in PENDING} for name, targets in edges.items()}


def commands() -> set[str]:
    """Modules with a top-level `def main`: what a `python -m minifreeze.<command>` runs."""
    return {
        name
        for name, path in modules().items()
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(path.read_text()).body)
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per module that lies on one (depth-first search, each cycle as a path back to its start)."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            visit(target, path + [node])
        done.add(node)

    for start in sorted(edges):
        visit(start, [])
    return found


def test_the_graph_reader_sees_relative_lazy_and_package_imports():
    """A reader that missed an import kind would pass any graph: check it against known edges."""
    edges = {name: imported(name, path, set(modules())) for name, path in modules().items()}
    assert {"cli", "data", "errors", "scoring", "runtime", "model", "task", "tokenizer"} <= edges["evaluate"]
    assert {"cli", "sweep.report", "train", "runtime"} <= edges["sweep"]  # `from .. import cli, train`
    assert "sweep" in edges["sweep.__main__"] and "tokenizer" not in edges["data"]  # TYPE_CHECKING only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_commands_never_import_each_other_and_the_library_never_imports_a_command():
    names, edges = commands(), graph()
    assert {"train", "evaluate", "predict", "inspect", "sweep"} <= names
    wrong = [
        f"{source} imports the command {target}"
        for source, targets in sorted(edges.items())
        for target in sorted(targets & names)
        if (source, target) not in ALLOWED and source != f"{target}.__main__"
    ]
    assert not wrong, (
        "; ".join(wrong) + ": move what both need into a library module (runtime.py, scoring.py)"
    )


def test_pending_edges_still_exist():
    edges = {name: imported(name, path, set(modules())) for name, path in modules().items()}
    gone = [f"{a} -> {b}" for a, b in PENDING if b not in edges.get(a, ())]
    assert not gone, f"{', '.join(gone)} no longer exist: delete them from PENDING in tests/test_imports.py"


def test_every_module_imports_in_a_fresh_interpreter_in_either_order():
    """A cycle that the graph reader missed shows here as an ImportError; __main__ modules run commands."""
    names = sorted(f"minifreeze.{n}".rstrip(".") for n in modules() if not n.endswith("__main__"))
    script = (
        "import importlib, sys\n"
        "names = sys.argv[1:]\n"
        "for order in (names, names[::-1]):\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'minifreeze']:\n"
        "        del sys.modules[loaded]\n"
        "    for name in order:\n"
        "        importlib.import_module(name)\n"
    )
    path = [str(ROOT), str(ROOT / "kernels"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    result = subprocess.run(
        [sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
