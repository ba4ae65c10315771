"""Training throughput of fashion-vae (the ReinMax protocol's MLP at 8 x 4, batch 100): steps per second
with 1 and 2 torch threads, side by side.

Timed benchmarks, skipped in the default test run (``--benchmark-skip`` in the pytest configuration):

    pytest tests/benchmarks/training/test_fashion_throughput.py -o addopts="" --benchmark-only \
        --benchmark-group-by=group

One round is STEPS optimizer steps (batch drawn and binarized, forward, backward, Adam), as
:func:`gumbench.benchmarks.training.train` runs them, without evaluations; each benchmark's
``extra_info`` holds steps per second (median round) and the load average before and after, since
a second thread only helps when a second core is free.
"""

import os

import pytest
import torch

from gumbench.benchmarks.training import make_training_task
from gumbench.benchmarks.training.base import _optimizer_step
from gumbench.benchmarks.training.images import DEBIAN_DIR
from gumbench.estimators import make_estimator
from tests.conftest import require

STEPS = 50
ROUNDS = 5


@pytest.fixture(scope="module")
def task():
    require(DEBIAN_DIR.is_dir(), f"needs Fashion-MNIST at {DEBIAN_DIR}: apt-get install dataset-fashion-mnist")
    return make_training_task("fashion-vae")


@pytest.mark.benchmark(group="fashion-vae-steps")
@pytest.mark.parametrize("estimator", ["st-gumbel", "reinmax"])
@pytest.mark.parametrize("threads", [1, 2])
def test_training_steps_per_second(benchmark, task, threads, estimator):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = task.build(make_estimator(estimator)).train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=task.default_lr)
        generator = torch.Generator().manual_seed(0)
        groups = task.parameter_groups(model)
        step = iter(range(1, 10**9))

        def steps():
            for _ in range(STEPS):
                out, _, _ = _optimizer_step(
                    task, model, optimizer, generator, groups, model.bottleneck.estimator, next(step)
                )
            return out

        load_before = os.getloadavg()[0]
        out = benchmark.pedantic(steps, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        benchmark.extra_info.update(threads=threads, batch=task.params["batch"], steps_per_round=STEPS,
                                    steps_per_second=STEPS / benchmark.stats.stats.median,
                                    load_average_before=load_before, load_average_after=os.getloadavg()[0],
                                    cpus=os.cpu_count())
        assert torch.isfinite(out.total)
    finally:
        torch.set_num_threads(previous)
