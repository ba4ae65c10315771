"""Shared by every test: the ``generator`` fixture (a torch.Generator seeded with 1234) and ``gen(seed)``."""

import pytest
import torch


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
