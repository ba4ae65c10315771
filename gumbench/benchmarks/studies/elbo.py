"""Gradient accuracy inside a trained categorical VAE: the ELBO gradient, enumerated.

:func:`elbo_gradient_study` trains a categorical VAE (``digits-vae``, or ``fashion-vae``, the ReinMax
paper's protocol on Fashion-MNIST) with one estimator and, at checkpoints, compares
that estimator's gradient of the reconstruction term E_q[-log p(x|z)] w.r.t. the encoder logits
with the exact gradient, enumerated over all C^L codes (4,096 at the default 4 x 8 latents),
for a few evaluation images: relative bias, relative standard deviation of one estimate
(sqrt(tr Sigma) / ||exact||), relative MSE (E||x - e||^2 / ||e||^2) and cosine, with 95% intervals.
The KL term's gradient is analytic and identical for every estimator, so it is left out.

Instances are the replicate: by default 5 independently seeded problem instances, instance r a model trained
from seed + r (new weights, new training draws) probed on its own evaluation images (r x points to
(r + 1) x points - 1), with the estimates' draws seeded inside it. :func:`format_elbo_study` gives t
intervals over instances (:mod:`gumbench.benchmarks.studies.instances`) and, per checkpoint, the orderings
of relative MSE with "on k of n instances".
"""

from __future__ import annotations

from gumbench.benchmarks.probes import checked_checkpoints, gradient_probe
from gumbench.benchmarks.problems.elbo import checked_study
from gumbench.plugin import Range, check_integer

DEFAULT_INSTANCES = 5

DEFAULT_ESTIMATORS = (
    "st-gumbel",
    "soft-gumbel",
    "straight-through",
    "reinforce[baseline=ema]",
    "reinforce[baseline=loo]",
)


def elbo_gradient_study(estimator, *, task="digits-vae", checkpoints=(0, 150, 300), points: int = 4,
                        samples: int = 2000, seed: int = 0, instances: int = DEFAULT_INSTANCES):
    """Bias, relative standard deviation, relative MSE and cosine of ``estimator`` inside a categorical VAE
    (``task``: a ``digits-vae`` or ``fashion-vae`` spec, or such a task), on ``instances`` problem instances.

    Instance r trains the model with ``estimator`` itself from seed + r; at each checkpoint (steps), for its
    ``points`` evaluation images (r x points on), the exact gradient of E_q[-log p(x|z)] w.r.t. the encoder
    logits is enumerated (C^L configurations, at most 65,536) and compared with ``samples`` estimates.
    One row per (instance, checkpoint, image); every argument is checked before the first run trains.
    """
    import pandas as pd

    from gumbench.benchmarks.training import train

    task, est = checked_study(task, estimator)
    checkpoints = checked_checkpoints("elbo_gradient_study", checkpoints)
    instances = check_integer("elbo_gradient_study", "instances", instances, Range(1, 1000))
    probes = [gradient_probe(task, est, checkpoints, points=points, samples=samples, seed=seed + r,
                             first_image=r * points) for r in range(instances)]
    rows = []
    for r, (callback, probed) in enumerate(probes):
        train(task, est, steps=max(max(checkpoints), 1), seed=seed + r, callback=callback)
        rows.extend({"instance": r, "seed": seed + r, **row} for row in probed)
    return pd.DataFrame(rows)


def elbo_study(estimators=DEFAULT_ESTIMATORS, **kwargs):
    """:func:`elbo_gradient_study` for each estimator (names checked before anything runs); one DataFrame."""
    import pandas as pd

    from gumbench.estimators import make_estimator

    built = [make_estimator(e) for e in estimators]
    return pd.concat([elbo_gradient_study(est, **kwargs) for est in built], ignore_index=True)


def format_elbo_study(frame, width: int | None = None) -> str:
    """Per estimator and checkpoint, the mean over instances (of each instance's mean over its images) of relative
    bias, relative std, relative MSE and cosine with 95% t intervals over instances, then the orderings of
    relative MSE per checkpoint with "on k of n instances" (a text table and lines)."""
    from gumbench.benchmarks.studies.instances import format_orderings, orderings, summarize
    from gumbench.tables import render

    task = frame["task"].iloc[0]
    images = frame.groupby("instance")["image"].nunique().iloc[0]
    samples, n = int(frame["samples"].iloc[0]), frame["instance"].nunique()
    columns = ["relative_bias", "relative_std", "relative_mse", "cosine"]
    summary = summarize(frame, ["label", "step"], columns)
    cell = lambda r, c: f"{r[c]:.3g} [{r[c + '_low']:.3g}, {r[c + '_high']:.3g}]"  # noqa: E731
    rows = [(r["label"], int(r["step"]), *(cell(r, c) for c in columns)) for _, r in summary.iterrows()]
    title = (f"Over {n} instances (independently seeded models, {images} evaluation images each, averaged per "
             f"instance); {samples:,} estimates per image; exact gradient by enumeration ({task}). 95% t intervals "
             "over instances: relative bias arithmetic (clipped at 0), relative std and MSE geometric means "
             "(log scale), cosine Fisher z.")
    text = render(title, ["estimator", "step", "relative bias", "relative std", "relative MSE", "cosine"], rows,
                  width=width)
    ordered = orderings(frame, ["step"])
    lines = [f"Relative MSE, lower first, each against the next (step {step}):\n" +
             "\n".join(f"  {line}" for line in format_orderings(part))
             for step, part in ordered.groupby("step", sort=False)]
    return "\n\n".join([text, *lines])
