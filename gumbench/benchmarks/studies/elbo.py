"""Gradient accuracy inside a trained categorical VAE: the ELBO gradient, enumerated.

:func:`elbo_gradient_study` trains a categorical VAE (``digits-vae``, or ``fashion-vae``, the ReinMax
paper's protocol on Fashion-MNIST) with one estimator and, at checkpoints, compares
that estimator's gradient of the reconstruction term E_q[-log p(x|z)] w.r.t. the encoder logits
with the exact gradient, enumerated over all C^L codes (4,096 at the default 4 x 8 latents),
for a few evaluation images: relative bias, relative standard deviation of one estimate
(sqrt(tr Sigma) / ||exact||) and cosine, with 95% intervals. The KL term's gradient is analytic
and identical for every estimator, so it is left out.
"""

from __future__ import annotations

import math

import torch

from gumbench.benchmarks.gradstats import SAMPLES
from gumbench.errors import GumbenchError
from gumbench.plugin import SEED, STEPS, Range, check_integer

DEFAULT_ESTIMATORS = ("st-gumbel", "soft-gumbel", "straight-through", "reinforce[baseline=ema]", "reinforce[baseline=loo]")
VAE_TASKS = ("digits-vae", "fashion-vae")  # tasks with eval_images, reconstruction_loss, and encoder/decoder around the bottleneck
MAX_CODES = 65_536  # C^L configurations enumerated per image


def elbo_gradient_study(estimator, *, task="digits-vae", checkpoints=(0, 150, 300), points: int = 4, samples: int = 2000, seed: int = 0):
    """Bias, relative standard deviation and cosine of ``estimator`` inside a categorical VAE
    (``task``: a ``digits-vae`` or ``fashion-vae`` spec, or such a task).

    The model is trained with ``estimator`` itself; at each checkpoint (steps), for ``points``
    evaluation images, the exact gradient of E_q[-log p(x|z)] w.r.t. the encoder logits is
    enumerated (C^L configurations, at most 65,536) and compared with ``samples`` estimates.
    One row per (checkpoint, image).
    """
    import pandas as pd

    from gumbench.benchmarks.training import train

    task, est = checked_study(task, estimator)
    checkpoints = checked_checkpoints("elbo_gradient_study", checkpoints)
    callback, rows = gradient_probe(task, est, checkpoints, points=points, samples=samples, seed=seed)
    train(task, est, steps=max(max(checkpoints), 1), seed=seed, callback=callback)
    return pd.DataFrame(rows)


def checked_study(task, estimator):
    """(task, estimator) built and checked for an ELBO-gradient study: a categorical VAE whose codes can be
    enumerated, and a categorical (non-VQ) estimator."""
    from gumbench.benchmarks.training import make_training_task
    from gumbench.estimators import VQEstimator, make_estimator

    task = make_training_task(task)
    if task.name not in VAE_TASKS:
        raise GumbenchError(f"elbo_gradient_study: task must be one of {', '.join(VAE_TASKS)} (a categorical VAE), got {task.spec}")
    if task.codes ** task.groups > MAX_CODES:
        raise GumbenchError(f"elbo_gradient_study: {task.spec} has {task.codes}^{task.groups} codes; at most {MAX_CODES:,} "
                            f"can be enumerated (e.g. categories=8,latents=4)")
    est = make_estimator(estimator)
    if isinstance(est, VQEstimator):
        raise GumbenchError(f"{est.spec}: the ELBO gradient w.r.t. encoder logits needs a categorical estimator")
    return task, est


def gradient_probe(task, est, checkpoints, *, points: int = 4, samples: int = 2000, seed: int = 0):
    """A ``train()`` callback measuring ``est``'s ELBO gradient against the enumerated one at ``checkpoints``
    (steps), and the list it appends one row per (checkpoint, image) to. It draws only from its own
    generators (seed + image), so the training run it watches is the run it would be without it."""
    from gumbench.benchmarks.gradstats import gradient_statistics

    points = check_integer("elbo_gradient_study", "points", points, Range(1, len(task.eval_images)))
    check_integer("elbo_gradient_study", "samples", samples, SAMPLES)
    check_integer("elbo_gradient_study", "seed", seed, Range(0, SEED.high - points))  # image i uses seed + i
    checkpoints = set(checkpoints)
    rows = []

    def measure(step, model):
        if step not in checkpoints:
            return
        model.eval()
        images = task.eval_images[:points]
        with torch.no_grad():
            logits = model.bottleneck.logits_or_vectors(model.encoder(images))
        for i, image in enumerate(images):
            def recon(onehot, image=image):
                return task.reconstruction_loss(model.decoder(model.bottleneck.lookup(onehot)), image)

            s = gradient_statistics(est, logits[i].detach(), recon, samples, seed=seed + i)
            rows.append({"task": task.spec, "estimator": est.spec, "label": est.label, "step": step, "image": i,
                         "samples": samples, **_figures(s)})
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
            "cosine": cosine.value if cosine else None, "cosine_low": cosine.low if cosine else None,
            "cosine_high": cosine.high if cosine else None, "exact_norm": s.exact_norm}


def elbo_study(estimators=DEFAULT_ESTIMATORS, **kwargs):
    """:func:`elbo_gradient_study` for each estimator (names checked before anything runs); one DataFrame."""
    import pandas as pd

    from gumbench.estimators import make_estimator

    built = [make_estimator(e) for e in estimators]
    return pd.concat([elbo_gradient_study(est, **kwargs) for est in built], ignore_index=True)


def format_elbo_study(frame, width: int | None = None) -> str:
    """Per estimator and checkpoint, the mean over images of relative bias, relative std and cosine (a text table)."""
    from gumbench.tables import render

    task = frame["task"].iloc[0]
    images, samples = frame["image"].nunique(), int(frame["samples"].iloc[0])
    columns = ["relative_bias", "relative_std", "cosine"]
    means = frame.groupby(["label", "step"])[columns].mean()
    rows = [(label, step, *(f"{x:.3f}" for x in values)) for (label, step), values in zip(means.index, means.to_numpy())]
    return render(f"Mean over {images} evaluation images; {samples:,} estimates each; exact gradient by enumeration ({task}).",
                  ["estimator", "step", *columns], rows, width=width)
