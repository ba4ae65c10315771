"""The compile audit (gumbench.benchmarks.kernel_audit): every variant compiles for real GPUs, no GPU needed."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# find_spec, not importorskip: importing triton here, at collection, would fix it compiled
# before tests/kernels/conftest.py sets TRITON_INTERPRET for the kernel tests.
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs the triton package")


def run_clean(*args, timeout=300):
    """A fresh interpreter without TRITON_INTERPRET: kernels compile instead of interpret."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@needs_triton
def test_every_variant_compiles_for_sm80_and_sm90():
    result = run_clean("-m", "gumbench.cli", "audit-kernel", "--check", "--archs", "80", "--archs", "90")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "compiled" in result.stdout


def test_sass_parsing_finds_loops():
    from gumbench.benchmarks.kernel_audit import _loop_bodies

    ops = [("MOV", "R1, R2"), ("FADD", "R1, R1, R2"), ("ISETP.GE.AND", "P0, PT, R1, R3, PT"), ("BRA", "`(.L_x_1)")]
    assert _loop_bodies(ops, {".L_x_1": 1}) == [(1, 3)]
    assert _loop_bodies(ops, {".L_x_1": 4}) == []  # a forward branch is no loop
