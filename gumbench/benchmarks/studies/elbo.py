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

from gumbench.benchmarks.probes import checked_checkpoints, gradient_probe
from gumbench.benchmarks.problems.elbo import checked_study

DEFAULT_ESTIMATORS = (
    "st-gumbel",
    "soft-gumbel",
    "straight-through",
    "reinforce[baseline=ema]",
    "reinforce[baseline=loo]",
)


def elbo_gradient_study(
    estimator, *, task="digits-vae", checkpoints=(0, 150, 300), points: int = 4, samples: int = 2000, seed: int = 0
):
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
    rows = [
        (label, step, *(f"{x:.3f}" for x in values)) for (label, step), values in zip(means.index, means.to_numpy())
    ]
    return render(
        f"Mean over {images} evaluation images; {samples:,} estimates each; exact gradient by enumeration ({task}).",
        ["estimator", "step", *columns],
        rows,
        width=width,
    )
