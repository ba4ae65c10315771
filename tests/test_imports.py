"""The package's import graph has no cycle, counting imports inside functions too (they hide
cycles from Python but not from a reader), and the light modules stay light."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gumbench

PACKAGE = Path(gumbench.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """The gumbench modules ``name`` imports anywhere in its file: ``from a.b import c`` counts as
    a.b.c where that is a module, else as a.b; relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first repeated at the end), or None; depth-first search."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_correctly():
    assert "gumbench.benchmarks.sweep.report" in GRAPH["gumbench.cli"], "imports inside functions count"
    assert "gumbench.benchmarks.sweep.backends" in GRAPH["gumbench.benchmarks.sweep.runner"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_backends_know_nothing_of_the_runner():
    assert not any(m.startswith("gumbench.benchmarks.sweep.") and m != "gumbench.benchmarks.sweep.backends"
                   for m in GRAPH["gumbench.benchmarks.sweep.backends"])


def test_no_argparse_outside_the_cli():
    users = [
        name
        for name, path in MODULES.items()
        if "argparse"
        in {
            alias.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
    ]
    assert users == []


def test_light_imports_stay_light():
    """The CLI's entry, the registry and the kernel dispatcher import neither triton nor (for the first
    two) torch: `gumbench --help` stays fast and no GPU driver is touched at import."""
    code = (
        "import sys, gumbench.cli, gumbench.registry, gumbench.plugin; heavy = {'torch', 'triton'} & set(sys.modules); "
        "import gumbench.kernels; print(sorted(heavy), 'triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False"], out


@pytest.mark.parametrize("argv, heavy", [
    (["--help"], {"torch", "scipy", "pandas"}),
    (["list"], {"scipy", "pandas"}),  # list needs torch: the estimators it describes are torch modules
    (["gradstats", "-s", "10"], {"scipy.stats", "pandas"}),  # its one t quantile comes from scipy.special
])
def test_light_commands_import_only_what_they_need(argv, heavy, tmp_path):
    """What `gumbench --help`, `list` and `gradstats` have imported when they finish, in a fresh process."""
    code = (f"import json, sys; from gumbench.cli import main; code = main({argv!r}); "
            "print(json.dumps([code, sorted(sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    status, modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == 0
    assert [m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)] == []
    if argv[0] == "gradstats":
        assert {"torch", "scipy.special"} <= set(modules), "the check sees what is imported"


def shadowed_modules(modules: dict[str, Path]) -> list[str]:
    """Modules ``pkg.x`` whose package's ``__init__`` binds the name ``x`` to something else (a function
    imported from it, a class, a variable), so that ``import pkg.x`` and ``pkg.x`` give that instead."""
    found = []
    for package, path in modules.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                bound = [(alias.asname or alias.name, f"{base}.{alias.name}") for alias in node.names]
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound = [(node.name, None)]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound = [(t.id, None) for t in targets if isinstance(t, ast.Name)]
            else:
                continue
            found += [f"{package}.{name}" for name, source in bound
                      if f"{package}.{name}" in modules and source != f"{package}.{name}"]
    return sorted(found)


def test_no_module_is_hidden_by_a_name_its_package_binds(tmp_path):
    fake = {"p": tmp_path / "p" / "__init__.py", "p.x": tmp_path / "p" / "x.py", "p.y": tmp_path / "p" / "y.py"}
    fake["p"].parent.mkdir()
    fake["p"].write_text("from p.x import x\nfrom p import y\nfrom . import y as y\n")
    assert shadowed_modules(fake) == ["p.x"], "the check sees a function bound over its module, not the module itself"
    assert shadowed_modules(MODULES) == []
