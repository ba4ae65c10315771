"""Shared by every test: the ``generator`` fixture (a torch.Generator seeded with 1234), ``gen(seed)``,
and ``require_program(name, package)`` for tests that need a system program."""

import os
import shutil

import pytest
import torch


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def require_program(name: str, package: str) -> str:
    """The path of program ``name``. When it is missing the test is skipped with a one-line reason,
    or fails with it under GUMBENCH_REQUIRE_PROGRAMS=1 (set by .ci/run, so CI runs every test)."""
    path = shutil.which(name)
    if path is None:
        reason = f"needs {name}: apt-get install {package}"
        if os.environ.get("GUMBENCH_REQUIRE_PROGRAMS") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path
