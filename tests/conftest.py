"""Shared by every test: the ``generator`` fixture (a torch.Generator seeded with 1234), ``gen(seed)``,
and ``require_program(name, package)`` for tests that need a system program."""

import os
import shutil

# The kernel tests run Triton's interpreter on the CPU, and TRITON_INTERPRET must be set before anything
# imports triton (Triton decides compiled vs interpreted when it decorates, its own library included).
# Some test-only oracles import triton when they are imported (vector-quantize-pytorch, through its
# dependencies), and test modules are collected before tests/kernels/conftest.py runs, so it is set here.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def require(available: bool, reason: str) -> None:
    """Skip the test with the one-line ``reason`` when something it needs from the system is not
    available, or fail with it under GUMBENCH_REQUIRE_PROGRAMS=1 (set by .ci/run, so CI runs every test)."""
    if not available:
        if os.environ.get("GUMBENCH_REQUIRE_PROGRAMS") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def require_program(name: str, package: str) -> str:
    """The path of program ``name``; when it is missing, :func:`require` with "needs NAME: apt-get install PACKAGE"."""
    path = shutil.which(name)
    require(path is not None, f"needs {name}: apt-get install {package}")
    return path
