"""Limits that keep the code readable: no module over 500 lines and no function over 60 lines in gumbench/ and
scripts/, and ruff (configured in pyproject.toml: line length 120, pycodestyle, pyflakes, import order) clean."""

import ast
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import require_package

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULE_LINES, FUNCTION_LINES = 500, 60
SOURCES = sorted(p for folder in ("gumbench", "scripts") for p in (ROOT / folder).rglob("*.py"))


def too_long(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """One line per module over MODULE_LINES and per function over FUNCTION_LINES lines in ``path``."""
    text = path.read_text()
    where = path.relative_to(root)
    out = [f"{where}: {len(text.splitlines())} lines"] if len(text.splitlines()) > MODULE_LINES else []
    for node in ast.walk(ast.parse(text)):
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > FUNCTION_LINES
        ):
            out.append(f"{where}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    return out


def test_the_check_finds_a_function_one_line_too_long_and_a_module_one_line_too_long(tmp_path):
    body = "    x = 1\n"
    (tmp_path / "fits.py").write_text("def f():\n" + body * (FUNCTION_LINES - 1))
    (tmp_path / "long.py").write_text("def f():\n" + body * FUNCTION_LINES)
    (tmp_path / "big.py").write_text("x = 1\n" * (MODULE_LINES + 1))
    assert too_long(tmp_path / "fits.py", tmp_path) == []
    assert too_long(tmp_path / "long.py", tmp_path) == [f"long.py:1 f: {FUNCTION_LINES + 1} lines"]
    assert too_long(tmp_path / "big.py", tmp_path) == [f"big.py: {MODULE_LINES + 1} lines"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_500_lines_and_no_function_over_60(path):
    assert too_long(path) == []


def test_ruff_is_clean():
    require_package("ruff")
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "gumbench", "scripts", "tests"],
                           cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 0, found.stdout[-3000:]
