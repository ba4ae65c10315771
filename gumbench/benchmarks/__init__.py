"""Benchmarks: problems with a gradient to measure (toys with exact gradients, quantizer problems) and
gradient statistics over them."""

from gumbench.benchmarks.gradstats import GradientStatistics, Interval, gradient_statistics, problem_statistics
from gumbench.benchmarks.problems import (
                                          DEFAULT_TASK,
                                          GradientProblem,
                                          LogitsProblem,
                                          ToyTask,
                                          exact_expectation,
                                          exact_gradient,
                                          make_problem,
)
from gumbench.benchmarks.problems import registry as task_registry

make_task = make_problem  # the name the README's example and earlier releases use

__all__ = [
    "DEFAULT_TASK",
    "GradientProblem",
    "GradientStatistics",
    "Interval",
    "LogitsProblem",
    "ToyTask",
    "exact_expectation",
    "exact_gradient",
    "gradient_statistics",
    "make_problem",
    "make_task",
    "problem_statistics",
    "task_registry",
]
