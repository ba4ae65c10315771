"""require_program and require_package: a missing system program or optional Python package skips a test with one
line, or fails it under GUMBENCH_REQUIRE_PROGRAMS=1."""

import json
import shutil
import sys

import pytest

from tests.conftest import require_package, require_program

MISSING = "gumbench-no-such-program"


def test_require_program_returns_the_path_of_a_present_program():
    assert require_program("sh", "dash") == shutil.which("sh")


def test_a_missing_program_skips_with_one_line(monkeypatch):
    monkeypatch.delenv("GUMBENCH_REQUIRE_PROGRAMS", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_program(MISSING, "gumbench-pkg")
    assert str(skipped.value) == f"needs {MISSING}: apt-get install gumbench-pkg"


def test_a_missing_program_fails_under_the_ci_variable(monkeypatch):
    monkeypatch.setenv("GUMBENCH_REQUIRE_PROGRAMS", "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_program(MISSING, "gumbench-pkg")
    assert str(failed.value) == f"needs {MISSING}: apt-get install gumbench-pkg"


NO_PACKAGE = "gumbench_no_such_package"


def test_require_package_returns_the_imported_module():
    assert require_package("json") is json
    assert require_package("os.path") is sys.modules["os.path"]  # a submodule, by its dotted name


@pytest.mark.parametrize("variable", [None, "0", ""])
def test_a_missing_package_skips_with_one_line_naming_the_extra(monkeypatch, variable):
    if variable is None:
        monkeypatch.delenv("GUMBENCH_REQUIRE_PROGRAMS", raising=False)
    else:
        monkeypatch.setenv("GUMBENCH_REQUIRE_PROGRAMS", variable)  # only "1" makes it a failure
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_package(NO_PACKAGE)
    assert str(skipped.value) == f"needs {NO_PACKAGE}: pip install -e '.[test]'"
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_package(f"{NO_PACKAGE}.sub", extra="bench")  # its parent missing is the package missing
    assert str(skipped.value) == f"needs {NO_PACKAGE}.sub: pip install -e '.[bench]'"


def test_a_missing_package_fails_under_the_ci_variable(monkeypatch):
    monkeypatch.setenv("GUMBENCH_REQUIRE_PROGRAMS", "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_package(NO_PACKAGE)
    assert str(failed.value) == f"needs {NO_PACKAGE}: pip install -e '.[test]'"
    assert failed.value.__context__ is None


def test_a_package_blocked_as_if_uninstalled_is_missing(monkeypatch):
    monkeypatch.delenv("GUMBENCH_REQUIRE_PROGRAMS", raising=False)
    monkeypatch.setitem(sys.modules, "json", None)  # import json raises ModuleNotFoundError, as when it is absent
    with pytest.raises(pytest.skip.Exception, match=r"^needs json: pip install -e '\.\[test\]'$"):
        require_package("json")


def test_a_package_whose_own_import_breaks_says_why(tmp_path, monkeypatch):
    """Installed but broken (here: it imports a module that is missing): the reason names the import error."""
    monkeypatch.delenv("GUMBENCH_REQUIRE_PROGRAMS", raising=False)
    (tmp_path / "gumbench_broken_package.py").write_text(f"import {NO_PACKAGE}\n")
    (tmp_path / "gumbench_raising_package.py").write_text("raise ImportError('needs a newer torch')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_package("gumbench_broken_package")
    assert str(skipped.value) == ("needs gumbench_broken_package: pip install -e '.[test]' "
                                  f"(ModuleNotFoundError: No module named '{NO_PACKAGE}')")
    monkeypatch.setenv("GUMBENCH_REQUIRE_PROGRAMS", "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_package("gumbench_raising_package")
    assert str(failed.value) == ("needs gumbench_raising_package: pip install -e '.[test]' "
                                 "(ImportError: needs a newer torch)")
    assert failed.value.__context__ is None, "one line: not raised while handling the ImportError"
    assert "gumbench_raising_package" not in sys.modules
