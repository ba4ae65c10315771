"""require_program: a missing system program skips a test with one line, or fails it under GUMBENCH_REQUIRE_PROGRAMS=1."""

import shutil

import pytest

from tests.conftest import require_program

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
