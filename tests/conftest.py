"""Shared by every test: the ``generator`` fixture (a torch.Generator seeded with 1234) and ``gen(seed)``."""

import pytest
import torch


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def require_program(name: str, package: str) -> str:
    """The path of system program ``name``; when missing, the test is skipped with one line naming the
    Debian package, or fails when GUMBENCH_REQUIRE_PROGRAMS=1 (as in CI, which installs them)."""
    import os
    import shutil

    path = shutil.which(name)
    if path:
        return path
    reason = f"needs {name}: apt-get install {package}"
    if os.environ.get("GUMBENCH_REQUIRE_PROGRAMS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
