"""Every test here launches the Triton kernels (interpreted on CPU): without triton they skip, or fail
under GUMBENCH_REQUIRE_PROGRAMS=1."""

import pytest

from tests.conftest import require_package


@pytest.fixture(autouse=True)
def triton():
    return require_package("triton")
