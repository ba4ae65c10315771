"""Benchmarks: toy tasks with exact gradients and gradient statistics."""

from gumbench.benchmarks.toys import DEFAULT_TASK, ToyTask, exact_gradient, exact_expectation, make_task, registry as task_registry
from gumbench.benchmarks.gradstats import GradientStatistics, Interval, gradient_statistics, problem_statistics
from gumbench.benchmarks import quantizer_problems  # noqa: F401  (registers vq-distance and quantizer-smoothed)

__all__ = [
    "DEFAULT_TASK",
    "GradientStatistics",
    "Interval",
    "ToyTask",
    "exact_expectation",
    "exact_gradient",
    "gradient_statistics",
    "make_task",
    "problem_statistics",
    "task_registry",
]
