"""Training tasks with a discrete bottleneck; see :mod:`gumbench.benchmarks.training.base`.

The built-in tasks register when this package imports their modules.
"""

from gumbench.benchmarks.training import images, speech, synthetic, vq_wav2vec  # noqa: F401  (registers the tasks)
from gumbench.benchmarks.training.base import (
    DiscreteBottleneck,
    StepOutput,
    TrainingTask,
    make_training_task,
    register,
    registry,
    train,
)

__all__ = ["DiscreteBottleneck", "StepOutput", "TrainingTask", "make_training_task", "register", "registry", "train"]
