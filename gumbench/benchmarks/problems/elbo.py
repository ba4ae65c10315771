"""The ELBO gradient of a categorical VAE at one image, as a gradient problem.

The reconstruction term E_q[-log p(x|z)] of a trained ``digits-vae`` or ``fashion-vae`` is a function of the
encoder's logits (L latents x C categories) for image x; its exact gradient enumerates all C^L codes
(at most 65,536). The KL term's gradient is analytic and identical for every estimator, so it is left out.
"""

from __future__ import annotations

import torch

from gumbench.benchmarks.problems.base import LogitsGradient
from gumbench.errors import GumbenchError

VAE_TASKS = (
    "digits-vae",
    "fashion-vae",
)  # tasks with eval_images, reconstruction_loss, and encoder/decoder around the bottleneck
MAX_CODES = 65_536  # C^L configurations enumerated per image


class ElboImageProblem(LogitsGradient):
    """The reconstruction term at evaluation image ``index`` of ``task``, as a function of the logits the model's
    encoder gives it (detached); the model must be in eval mode and stay unchanged while it is measured."""

    def __init__(self, task, model, index: int, logits: torch.Tensor):
        self.task, self.model, self.index = task, model, index
        self.image = task.eval_images[index]
        self.logits = logits.detach()

    @property
    def spec(self) -> str:
        return f"{self.task.spec} (ELBO at evaluation image {self.index})"

    def loss(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.task.reconstruction_loss(self.model.decoder(self.model.bottleneck.lookup(onehot)), self.image)


def image_problems(task, model, points: int, first: int = 0) -> list[ElboImageProblem]:
    """One problem per evaluation image, ``points`` of them from image ``first`` on, with the logits of the model
    as it is now."""
    images = task.eval_images[first : first + points]
    with torch.no_grad():
        logits = model.bottleneck.logits_or_vectors(model.encoder(images))
    return [ElboImageProblem(task, model, first + i, logits[i]) for i in range(len(images))]


def checked_study(task, estimator):
    """(task, estimator) built and checked for an ELBO-gradient study: a categorical VAE whose codes can be
    enumerated, and a categorical (non-VQ) estimator."""
    from gumbench.benchmarks.training import make_training_task
    from gumbench.estimators import VQEstimator, make_estimator

    task = make_training_task(task)
    if task.name not in VAE_TASKS:
        raise GumbenchError(
            f"elbo_gradient_study: task must be one of {', '.join(VAE_TASKS)} (a categorical VAE), got {task.spec}"
        )
    if task.codes ** task.groups > MAX_CODES:
        raise GumbenchError(
            f"elbo_gradient_study: {task.spec} has {task.codes}^{task.groups} codes; at most {MAX_CODES:,} "
            f"can be enumerated (e.g. categories=8,latents=4)"
        )
    est = make_estimator(estimator)
    if isinstance(est, VQEstimator):
        raise GumbenchError(f"{est.spec}: the ELBO gradient w.r.t. encoder logits needs a categorical estimator")
    return task, est
