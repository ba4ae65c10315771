"""Byte counts per logit: the committed table (results/kernel/ptx_audit.md, which docs/kernel.md quotes
through scripts/write_docs.py) is what the counters give, and the counters count."""

import re
from pathlib import Path

import pytest

from gumbench.benchmarks.kernel_traffic import byte_table, compiled_traffic, eager_traffic

AUDIT = (Path(__file__).resolve().parents[2] / "results" / "kernel" / "ptx_audit.md").read_text()


@pytest.fixture(scope="module")
def table():
    return {row["path"]: row for row in byte_table()}


def test_committed_byte_table_matches_the_counts(table):
    """Each row of the committed table (kernels, bytes per element as written) equals the count now."""
    for path, row in table.items():
        kernels, size = re.search(rf"^\| {re.escape(path)} \| ([^|]+) \| ([\d.]+) \|", AUDIT, re.M).groups()
        assert kernels.strip() == str(row["kernels"]) and size == f"{row['bytes']:.1f}", path


def test_fused_paths_sit_between_the_floor_and_eager(table):
    floor = table["floor (fp32)"]["bytes"]
    assert floor == 16.0  # read x, write y, read dy, write dx at 4 bytes
    assert (
        floor
        < table["fused, recompute (fp32)"]["bytes"]
        < table["fused, saved y (fp32)"]["bytes"]
        <= table["torch.compile (fp32)"]["bytes"]
    )
    assert table["torch.compile (fp32)"]["bytes"] < table["eager F.gumbel_softmax (fp32)"]["bytes"]


def test_counts_scale_with_the_problem_not_the_shape():
    """Per-element bytes hardly depend on the size (per-row vectors are left out), and the soft
    path skips the one-hot's kernels."""
    small, large = eager_traffic(64, 320), eager_traffic(128, 1000)
    assert abs(small["bytes_per_element"] - large["bytes_per_element"]) < 0.1
    soft = eager_traffic(64, 320, hard=False)
    assert soft["kernels"] < small["kernels"] and soft["bytes_per_element"] < small["bytes_per_element"]
    compiled = compiled_traffic()
    assert compiled["forward"] > 0 and compiled["backward"] > 0
