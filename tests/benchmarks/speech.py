"""Shared by the speech task and speech study tests: one task instance per spec, a model built from a seed."""

import torch

from gumbench.benchmarks.training import make_training_task
from gumbench.estimators import make_estimator

TIMING = ["step_seconds", "peak_memory_mb"]

_TASKS = {}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def task_of(spec):
    """One instance per spec for the whole test session (building a task loads and featurizes the corpus)."""
    if spec not in _TASKS:
        _TASKS[spec] = make_training_task(spec)
    return _TASKS[spec]


def _logmel_model(task, estimator="st-gumbel", seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return task.build(make_estimator(estimator))
