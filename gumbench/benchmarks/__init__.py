"""Benchmarks: toy tasks with exact gradients and gradient statistics."""

from gumbench.benchmarks.toys import DEFAULT_TASK, ToyTask, exact_gradient, exact_expectation, make_task, registry as task_registry
from gumbench.benchmarks.gradstats import GradientStatistics, Interval, gradient_statistics

__all__ = [
    "DEFAULT_TASK",
    "GradientStatistics",
    "Interval",
    "ToyTask",
    "exact_expectation",
    "exact_gradient",
    "gradient_statistics",
    "make_task",
    "task_registry",
]
