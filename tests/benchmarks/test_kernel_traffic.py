"""Byte counts per logit: the table docs/kernel.md quotes is what the counters give, and the counters count."""

import re
from pathlib import Path

import pytest

from gumbench.benchmarks.kernel_traffic import byte_table, compiled_traffic, eager_traffic

KERNEL_DOC = (Path(__file__).resolve().parents[2] / "docs" / "kernel.md").read_text()


@pytest.fixture(scope="module")
def table():
    return {row["path"]: row for row in byte_table()}


def test_documented_byte_table_matches_the_counts(table):
    """Each row of the doc's table (kernels, bytes per element, rounded as printed) equals the count."""
    documented = {
        "eager F.gumbel_softmax (fp32)": r"\| eager `F\.gumbel_softmax` \(fp32\) \| (\d+) \| (\d+) \|",
        "fairseq wav2vec 2.0 call (fp16 x)": r"\| fairseq's wav2vec 2\.0 call, fp16 x \| (\d+) \| (\d+) \|",
    }
    for path, pattern in documented.items():
        kernels, size = re.search(pattern, KERNEL_DOC).groups()
        assert table[path]["kernels"] == int(kernels) and round(table[path]["bytes"]) == int(size), path
    assert re.search(r"\| `torch\.compile` \(fp32\) \| >= 2 \| >= (\d+) \|", KERNEL_DOC).group(1) == f"{table['torch.compile (fp32)']['bytes']:.0f}"


def test_fused_paths_sit_between_the_floor_and_eager(table):
    floor = table["floor (fp32)"]["bytes"]
    assert floor == 16.0  # read x, write y, read dy, write dx at 4 bytes
    assert floor < table["fused, recompute (fp32)"]["bytes"] < table["fused, saved y (fp32)"]["bytes"] <= table["torch.compile (fp32)"]["bytes"]
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
