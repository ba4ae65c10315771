"""Training tasks with a discrete bottleneck; see :mod:`gumbench.benchmarks.training.base`.

The built-in tasks register when this package imports their modules.
"""

from gumbench.benchmarks.training import (  # noqa: F401  (registers the tasks)
    images,
    logmel_vqvae,
    speech,
    synthetic,
    vq_wav2vec,
)
from gumbench.benchmarks.training.base import (
    DiscreteBottleneck,
    StepOutput,
    TrainingTask,
    make_training_task,
    register,
    registry,
    train,
)
from gumbench.benchmarks.training.table import training_table

__all__ = ["DiscreteBottleneck", "StepOutput", "TrainingTask", "make_training_task", "register", "registry", "train",
           "training_table"]
