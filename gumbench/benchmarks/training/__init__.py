"""Training tasks with a discrete bottleneck; see :mod:`gumbench.benchmarks.training.base`."""

from gumbench.benchmarks.training.base import (
    DiscreteBottleneck,
    StepOutput,
    TrainingTask,
    make_training_task,
    register,
    registry,
    train,
)
from gumbench.benchmarks.training import speech, synthetic  # noqa: F401  (registers the tasks)
from gumbench.benchmarks.training.synthetic import elbo_gradient_study

__all__ = ["DiscreteBottleneck", "StepOutput", "TrainingTask", "elbo_gradient_study", "make_training_task", "register", "registry", "train"]
