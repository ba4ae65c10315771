"""The compile audit (gumbench.benchmarks.kernel_audit): every variant compiles for real GPUs, no GPU needed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_package

ROOT = Path(__file__).resolve().parents[2]


def run_clean(*args, timeout=300):
    """A fresh interpreter without TRITON_INTERPRET: kernels compile instead of interpret."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_variant_compiles_for_sm80_and_sm90():
    require_package("triton")  # imported here interpreted (tests/conftest.py); the audit compiles in a fresh process
    result = run_clean("-m", "gumbench.cli", "audit-kernel", "--check", "--archs", "80", "--archs", "90")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "compiled" in result.stdout


def test_sass_parsing_finds_loops():
    from gumbench.benchmarks.kernel_audit import _loop_bodies

    ops = [("MOV", "R1, R2"), ("FADD", "R1, R1, R2"), ("ISETP.GE.AND", "P0, PT, R1, R3, PT"), ("BRA", "`(.L_x_1)")]
    assert _loop_bodies(ops, {".L_x_1": 1}) == [(1, 3)]
    assert _loop_bodies(ops, {".L_x_1": 4}) == []  # a forward branch is no loop


def test_cli_reports_a_failed_compile_on_stderr_and_exits_1(monkeypatch, capsys):
    from gumbench import cli
    from gumbench.benchmarks import kernel_audit

    results = [("fwd[soft]", 90, "RuntimeError: ptxas failed", 1.0), ("bwd[saved]", 90, None, 1.0)]
    monkeypatch.setattr(kernel_audit, "check_all", lambda archs, jobs: results)
    assert cli.main(["audit-kernel", "--check", "--archs", "90"]) == 1
    out, err = capsys.readouterr()
    assert err == "FAIL sm_90 fwd[soft]: RuntimeError: ptxas failed\n"
    assert out.startswith("compiled 1/2 variants in ")


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "nothing to do: pass --check, --out DIR or both"),
        (("--check", "--archs", "20"), "archs must be compute capabilities from 70 to 100 (e.g. 80, 90); got 20"),
        (("--check", "--jobs", "0"), "--jobs"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, capsys):
    from gumbench import cli

    assert cli.main(["audit-kernel", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("gumbench: error: ") and message in err
