"""Kernel tests run on CPU through Triton's interpreter; the PyTorch reference, launch and dispatch
tests run without triton, the tests that launch a kernel ask for it (``require_package("triton")``;
every test under fused/ through its conftest).

TRITON_INTERPRET must be set before anything imports triton (Triton decides compiled vs
interpreted when it decorates, its own library included): tests/conftest.py sets it before any
test module is collected; it is set here too for running this folder's tests with another root.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from gumbench.kernels import launch  # noqa: E402

MAX_PROGRAMS = 8  # the interpreter runs ~20 ms per program instance


@pytest.fixture(autouse=True)
def few_programs(monkeypatch):
    """Fail any launch of more than MAX_PROGRAMS program instances: the suite stays fast."""
    grid = launch.LaunchConfig.grid

    def checked(self, n_rows):
        g = grid(self, n_rows)
        assert g[0] <= MAX_PROGRAMS, f"launch of {g[0]} programs; keep test inputs to <= {MAX_PROGRAMS}"
        return g

    monkeypatch.setattr(launch.LaunchConfig, "grid", checked)


@pytest.fixture
def small_blocks(monkeypatch):
    """Shrink the launch limits so that K > 32 takes the looped path in 16-wide chunks."""
    monkeypatch.setattr(launch, "MAX_SINGLE_BLOCK", 32)
    monkeypatch.setattr(launch, "LOOP_BLOCK", 16)
