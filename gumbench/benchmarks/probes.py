"""Gradient probes that watch a training run: at checkpoints, measure an estimator's gradient inside the model.

:func:`gradient_probe` is the ``train()`` callback of the ELBO-gradient study and of sweep sections with
``gradient_checkpoints``: at each checkpoint it measures the estimator on every probed image's
:class:`~gumbench.benchmarks.problems.elbo.ElboImageProblem` against the enumerated gradient.
"""

from __future__ import annotations

import math

from gumbench.benchmarks.gradstats import problem_statistics
from gumbench.benchmarks.problems.elbo import image_problems
from gumbench.errors import GumbenchError
from gumbench.plugin import SAMPLES, SEED, STEPS, Range, check_integer


def gradient_probe(task, est, checkpoints, *, points: int = 4, samples: int = 2000, seed: int = 0,
                   first_image: int = 0):
    """A ``train()`` callback measuring ``est``'s ELBO gradient against the enumerated one at ``checkpoints``
    (steps), and the list it appends one row per (checkpoint, image) to: evaluation images ``first_image`` to
    ``first_image + points - 1``. It draws only from its own generators (seed + image), so the training run it
    watches is the run it would be without it."""
    points = check_integer("elbo_gradient_study", "points", points, Range(1, len(task.eval_images)))
    check_integer("elbo_gradient_study", "samples", samples, SAMPLES)
    last = first_image + points - 1
    if last >= len(task.eval_images):
        raise GumbenchError(f"elbo_gradient_study: {task.spec} has {len(task.eval_images)} evaluation images; "
                            f"images {first_image} to {last} were asked for (fewer points or instances)")
    check_integer("elbo_gradient_study", "seed", seed, Range(0, SEED.high - last - 1))  # image i uses seed + i
    checkpoints = set(checkpoints)
    rows = []

    def measure(step, model):
        if step not in checkpoints:
            return
        model.eval()
        for problem in image_problems(task, model, points, first_image):
            s = problem_statistics(est, problem, samples, seed=seed + problem.index)
            rows.append(
                {
                    "task": task.spec,
                    "estimator": est.spec,
                    "label": est.label,
                    "step": step,
                    "image": problem.index,
                    "samples": samples,
                    **_figures(s),
                }
            )
        model.train()

    return measure, rows


def checked_checkpoints(owner: str, checkpoints) -> list[int]:
    """Sorted distinct training steps, each an integer in [0, STEPS.high]; at least one."""
    try:
        steps = sorted({check_integer(owner, "checkpoints", c, Range(0, STEPS.high)) for c in checkpoints})
    except TypeError:
        raise GumbenchError(f"{owner}: checkpoints must be a list of steps, got {checkpoints!r}") from None
    if not steps:
        raise GumbenchError(f"{owner}: checkpoints must name at least one step")
    return steps


def _figures(s) -> dict:
    """The row figures of one image's statistics."""
    cosine, bias = s.cosine, s.relative_bias  # None where the exact gradient is zero
    return {"relative_bias": bias.value if bias else None, "relative_bias_low": bias.low if bias else None,
            "relative_bias_high": bias.high if bias else None,
            "relative_std": math.sqrt(s.total_variance.value) / s.exact_norm if s.exact_norm > 0 else None,
            "relative_mse": s.mse.value / s.exact_norm ** 2 if s.exact_norm > 0 else None,
            "cosine": cosine.value if cosine else None, "cosine_low": cosine.low if cosine else None,
            "cosine_high": cosine.high if cosine else None, "exact_norm": s.exact_norm}
