"""Shared by every test: the ``generator`` fixture (a torch.Generator seeded with 1234), ``gen(seed)``,
``require_program(name, package)`` for tests that need a system program and ``require_package(module)``
for tests that need an optional Python package (an extra's: triton, vector-quantize-pytorch, dask, ...)."""

import importlib
import os
import shutil
from types import ModuleType

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


def require_package(module: str, extra: str = "test") -> ModuleType:
    """Module ``module`` imported; when it does not import, :func:`require` with
    "needs MODULE: pip install -e '.[EXTRA]'" (and the import error, where something else than ``module`` itself is
    missing). Call it in the test or fixture that uses the package, so that only those tests skip without it (or fail
    under GUMBENCH_REQUIRE_PROGRAMS=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        failure = error  # reported below, outside the handler: the skip or failure is one line, without the chain
    name = getattr(failure, "name", None)  # the module found missing
    absent = isinstance(failure, ModuleNotFoundError) and name is not None and f"{module}.".startswith(f"{name}.")
    why = "" if absent else f" ({type(failure).__name__}: {failure})"
    require(False, f"needs {module}: pip install -e '.[{extra}]'{why}")
