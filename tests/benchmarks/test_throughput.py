"""Throughput of gradient statistics: batched draws against one backward per sample.

Timed benchmarks, skipped in the default test run (``--benchmark-skip`` in the
pytest configuration). Run both side by side, in one process:

    pytest tests/benchmarks/test_throughput.py -o addopts="" --benchmark-only --benchmark-group-by=group

``chunk_size=1`` sends every estimate through its own forward and backward: the
naive loop, through the very same statistics code.
"""

import pytest

from gumbench.benchmarks import gradient_statistics, make_task

SAMPLES = 10_000
TASK = "categorical[groups=1,categories=64]"  # K = 64


@pytest.fixture(scope="module")
def toy():
    return make_task(TASK)


@pytest.mark.benchmark(group="gradstats-10k-K64")
@pytest.mark.parametrize("estimator", ["st-gumbel", "reinforce[baseline=loo]"])
def test_batched(benchmark, toy, estimator):
    stats = benchmark.pedantic(gradient_statistics, args=(estimator, toy.logits, toy.loss, SAMPLES, 0), rounds=5, iterations=1)
    assert stats.samples == SAMPLES


@pytest.mark.benchmark(group="gradstats-10k-K64")
@pytest.mark.parametrize("estimator", ["st-gumbel", "reinforce[baseline=loo]"])
def test_one_backward_per_sample(benchmark, toy, estimator):
    stats = benchmark.pedantic(
        gradient_statistics, args=(estimator, toy.logits, toy.loss, SAMPLES, 0), kwargs={"chunk_size": 1}, rounds=1, iterations=1
    )
    assert stats.samples == SAMPLES
