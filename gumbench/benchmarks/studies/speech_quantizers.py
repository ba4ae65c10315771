"""Bias and variance of gradient estimators inside the speech quantizers (wav2vec2, logmel-vqvae).

:func:`quantizer_gradient_study` trains a task with one estimator (``trained_with``) and, at
each checkpoint, freezes the model and a fixed batch of ``crops`` evaluation crops
(wav2vec2: 1 s of held-out speech each, with masks and distractors drawn from the instance's seed;
logmel-vqvae: 32-frame log-mel segments). Instances are the replicate: instance r (5 by default) trains
its own model from seed + r and freezes its own crops (r x crops on), so summaries are intervals over
instances and orderings say on how many instances they hold. Every quantizer group of every frame of that batch
(masked frames only for wav2vec2, the only ones quantized) becomes one of R groups of ONE
row, logits (R, V), and the loss is the batch's total loss as a function of all R one-hots
at once:

    wav2vec2       mean InfoNCE over the masked frames (distractors couple the frames)
    logmel-vqvae   mean reconstruction error over the frames

The diversity term and the feature penalty do not depend on the sample, so their gradients
are the same for every estimator and are left out. Because the whole batch is one row, a
score-function estimator's credit assignment is exact and REINFORCE is unbiased even though
frames interact (in training, rows are frames and it is not; see the speech tasks).

References. For wav2vec2 the exact gradient would need V^R configurations (distractors couple
the frames), so the reference is a many-sample unbiased estimate: the mean of
``reference_samples`` estimates of ``reference`` (REINFORCE with a leave-one-out baseline over
16 samples each, by default). Its own error, ``reference_error`` = sqrt(tr Sigma_ref / M)
(the root-mean-square distance of the mean of M estimates from the true gradient), is
reported with a confidence interval and relative to the reference's norm: a bias below it
is not resolved. For logmel-vqvae the decoder is per frame, so E[loss] is a mean over frames
of sums over each frame's V^G codes and the reference is exact (enumeration; error 0);
``use_exact=False`` swaps in the sampled reference, to check one against the other.

Each estimator then gets :func:`gradient_statistics` against the reference: total variance
of one estimate, bias ||E[x] - ref|| (with a sampled reference it contains the reference's
error in quadrature; ``relative_bias_corrected`` subtracts it: sqrt(max(0, bias^2 -
reference_error^2)) / ||ref||), cosine and SNR, each with a 95% jackknife interval.
Estimators that draw several samples per estimate (RLOO) count one estimate, not one sample.
"""

from __future__ import annotations

import contextlib
import math

import torch

from gumbench.benchmarks.probes import checked_checkpoints
from gumbench.errors import GumbenchError
from gumbench.plugin import SAMPLES, SEED, Range, check_integer, check_number

DEFAULT_ESTIMATORS = ("st-gumbel", "soft-gumbel", "straight-through", "reinforce[baseline=loo]")
DEFAULT_REFERENCE = "reinforce[baseline=loo,samples=16]"
DEFAULT_INSTANCES = 5
CHUNK_ELEMENTS = 8_000_000  # logits elements per batched draw (rows x samples x R x V), bounds memory


@contextlib.contextmanager
def frozen(model):
    """No parameter gradients while the study draws estimates (only the logits' gradient is wanted)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train()


def _chunk(estimator, logits) -> int:
    draws = estimator.params.get("samples", 1) or 1
    return max(1, min(4096, CHUNK_ELEMENTS // (draws * logits.numel())))


def _interval(prefix: str, interval, scale: float = 1.0) -> dict:
    if interval is None:
        return {prefix: None, f"{prefix}_low": None, f"{prefix}_high": None}
    return {
        prefix: interval.value / scale,
        f"{prefix}_low": interval.low / scale,
        f"{prefix}_high": interval.high / scale,
    }


def reference_gradient(
    logits, loss_fn, *, reference=DEFAULT_REFERENCE, samples: int = 8000, seed: int = 0, confidence: float = 0.95
):
    """Mean of ``samples`` unbiased estimates and its error bar; returns (gradient (R, V), dict of figures)."""
    from gumbench.benchmarks.gradstats import gradient_statistics
    from gumbench.estimators import make_estimator

    est = make_estimator(reference)
    if est.family != "score-function":
        raise GumbenchError(
            f"the reference must be an unbiased score-function estimator (e.g. {DEFAULT_REFERENCE}), got {est.spec}"
        )
    s = gradient_statistics(est, logits, loss_fn, samples, seed, confidence=confidence, chunk_size=_chunk(est, logits),
                            reference=torch.zeros_like(logits, dtype=torch.float64))
    mean = s.mean_gradient
    norm = float(mean.norm())
    error = {k: math.sqrt(max(v, 0.0) / samples) for k, v in
             (("value", s.total_variance.value), ("low", s.total_variance.low), ("high", s.total_variance.high))}
    figures = {
        "reference": s.estimator,
        "reference_samples": samples,
        "reference_norm": norm,
        "reference_error": error["value"],
        "reference_error_low": error["low"],
        "reference_error_high": error["high"],
        "reference_relative_error": error["value"] / norm if norm > 0 else None,
        "reference_relative_error_high": error["high"] / norm if norm > 0 else None,
    }
    return mean, figures


def measure(
    estimators,
    logits,
    loss_fn,
    *,
    reference=DEFAULT_REFERENCE,
    samples: int = 2000,
    reference_samples: int = 8000,
    seed: int = 0,
    tau: float | None = None,
    confidence: float = 0.95,
    exact_gradient=None,
) -> list[dict]:
    """One row per estimator (after one row for the reference itself) on fixed logits (R, V) and a whole-batch loss.

    ``exact_gradient`` (a callable giving d E[loss] / d logits), where the loss allows enumeration,
    replaces the sampled reference; its error is then 0.
    """
    if exact_gradient is not None:
        ref, figures = _exact_reference(exact_gradient)
    else:
        ref, figures = reference_gradient(
            logits, loss_fn, reference=reference, samples=reference_samples, seed=seed + 100_003, confidence=confidence
        )
    if figures["reference_norm"] == 0:
        raise GumbenchError("the reference gradient is zero: the loss does not depend on the quantizer's choices here")
    shape = {"rows": logits.shape[0], "categories": logits.shape[1]}
    rows = [
        {
            "role": "reference",
            "estimator": figures["reference"],
            "label": figures["reference"],
            "samples": figures["reference_samples"],
            **figures,
            **shape,
        }
    ]
    for i, spec in enumerate(estimators):
        rows.append(_estimator_row(spec, logits, loss_fn, ref, figures, samples=samples, seed=seed + 1 + i, tau=tau,
                                   confidence=confidence))
    return rows


def _exact_reference(exact_gradient) -> tuple[torch.Tensor, dict]:
    """The exact gradient (float64) as the reference, with the figures of a reference whose error is 0."""
    ref = exact_gradient().to(torch.float64)
    norm = float(ref.norm())
    figures = {"reference": "exact (enumeration per frame)", "reference_samples": 0, "reference_norm": norm,
               "reference_error": 0.0, "reference_error_low": 0.0, "reference_error_high": 0.0,
               "reference_relative_error": 0.0, "reference_relative_error_high": 0.0}
    return ref, figures


def _estimator_row(spec, logits, loss_fn, ref, figures: dict, *, samples: int, seed: int, tau: float | None,
                   confidence: float) -> dict:
    """One estimator's row of :func:`measure`: its bias (raw and corrected for the reference's error), variance,
    cosine and SNR against ``ref``, relative to the reference's norm where they scale with it."""
    from gumbench.benchmarks.gradstats import gradient_statistics
    from gumbench.estimators import VQEstimator, make_estimator

    norm = figures["reference_norm"]
    est = make_estimator(spec)
    if tau is not None and est.has_temperature and "tau" not in est.given:
        est = est.with_params(tau=tau)
    if isinstance(est, VQEstimator):
        raise GumbenchError(
            f"{est.spec} is a VQ estimator: it takes vectors, not logits; the study measures categorical estimators"
        )
    s = gradient_statistics(est, logits, loss_fn, samples, seed, confidence=confidence,
                            chunk_size=_chunk(est, logits), reference=ref)
    bias_sq = s.bias.value ** 2 - figures["reference_error"] ** 2
    return {
        "role": "estimator", "estimator": s.estimator, "label": est.label, "samples": samples, **figures,
        "rows": logits.shape[0], "categories": logits.shape[1],
        **_interval("relative_bias", s.bias, norm),
        "relative_bias_corrected": math.sqrt(max(bias_sq, 0.0)) / norm,
        **_interval("total_variance", s.total_variance),
        "relative_std": math.sqrt(s.total_variance.value) / norm, "relative_mse": s.mse.value / norm ** 2,
        **_interval("cosine", s.cosine), **_interval("snr", s.snr),
    }


def quantizer_gradient_study(
    task="wav2vec2",
    estimators=DEFAULT_ESTIMATORS,
    *,
    trained_with="st-gumbel",
    checkpoints=(0, 150, 300),
    crops: int = 1,
    samples: int = 2000,
    reference=DEFAULT_REFERENCE,
    reference_samples: int = 8000,
    seed: int = 0,
    confidence: float = 0.95,
    use_exact: bool = True,
    instances: int = DEFAULT_INSTANCES,
):
    """Variance, bias and cosine of each estimator at the quantizer logits, at checkpoints of training; a DataFrame.

    Over ``instances`` independently seeded problem instances: instance r trains its own model from seed + r and
    freezes its own ``crops`` evaluation crops (r x crops on) with masks and distractors drawn from seed + r; the
    estimates' and the reference's draws are seeded inside it. One row per (instance, checkpoint, estimator) plus
    one ``role == "reference"`` row per (instance, checkpoint). See the module docstring for the reference and the
    definitions. ``use_exact=False`` uses the sampled reference even where the task can enumerate (to check one
    against the other).
    """
    import pandas as pd

    from gumbench.benchmarks.training import train

    task, checkpoints, batch = _checked_study(task, trained_with, checkpoints, crops, samples, reference_samples, seed,
                                              confidence, instances)
    rows = []
    for r in range(instances):
        callback = _probe(task, estimators, trained_with, checkpoints, batch[r * crops : (r + 1) * crops], rows,
                          instance=r, seed=seed + r, reference=reference, samples=samples,
                          reference_samples=reference_samples, confidence=confidence, use_exact=use_exact)
        train(task, trained_with, steps=max(checkpoints[-1], 1), seed=seed + r, callback=callback)
    return pd.DataFrame(rows)


def _probe(task, estimators, trained_with, checkpoints, batch, rows: list, *, instance: int, seed: int, reference,
           samples: int, reference_samples: int, confidence: float, use_exact: bool):
    """The ``train()`` callback of one instance: at each checkpoint, :func:`measure` on its frozen batch."""
    from gumbench.estimators import make_estimator

    def at_checkpoint(step, model):
        if step not in checkpoints:
            return
        with frozen(model):
            problem = task.quantizer_problem(model, batch, torch.Generator().manual_seed(seed))
            tau = task.temperature(max(step, 1))
            exact = problem.exact_gradient if use_exact else None
            for row in measure(estimators, problem.logits, problem.loss_fn, reference=reference, samples=samples,
                               reference_samples=reference_samples, seed=seed, tau=tau, confidence=confidence,
                               exact_gradient=exact):
                rows.append({"task": task.label, "trained_with": make_estimator(trained_with).spec,
                             "instance": instance, "seed": seed, "step": step, "tau": tau, **row})

    return at_checkpoint


def _checked_study(task, trained_with, checkpoints, crops, samples, reference_samples, seed, confidence, instances):
    """The study's settings, checked before training starts: (the training task, the sorted checkpoints, the
    evaluation crops of every instance)."""
    from gumbench.benchmarks.training import make_training_task
    from gumbench.estimators import VQEstimator, make_estimator

    task = make_training_task(task)
    if not task.has_quantizer_problem:
        raise GumbenchError(f"{task.spec} has no quantizer problem; use wav2vec2 or logmel-vqvae")
    if isinstance(make_estimator(trained_with), VQEstimator):
        raise GumbenchError(f"{trained_with}: the study needs logits, so train with a categorical estimator")
    owner = "quantizer_gradient_study"
    checkpoints = checked_checkpoints(owner, checkpoints)
    batch = task.eval_batch()
    crops = check_integer(owner, "crops", crops, Range(1, len(batch)))
    check_integer(owner, "instances", instances, Range(1, len(batch) // crops))  # each instance its own crops
    for key, value in (("samples", samples), ("reference_samples", reference_samples)):
        check_integer(owner, key, value, SAMPLES)
    # the reference draws from seed + r + 100,003
    check_integer(owner, "seed", seed, Range(0, SEED.high - 100_003 - instances))
    check_number(owner, "confidence", confidence, Range(0, 1, low_open=True, high_open=True))
    return task, checkpoints, batch[: crops * instances]


def format_study(frame, width: int | None = None) -> str:
    """Text tables of a study (:func:`gumbench.tables.render`): one per checkpoint, a row per estimator with the
    mean over instances and its 95% t interval over instances (:mod:`gumbench.benchmarks.studies.instances`), then
    the orderings of relative MSE with "on k of n instances"."""
    from gumbench.benchmarks.studies.instances import format_orderings, orderings, span, summarize
    from gumbench.tables import render

    columns = ["relative_bias", "relative_std", "relative_mse", "cosine"]
    estimates = frame[frame.role == "estimator"]
    summary = summarize(estimates, ["task", "step", "label"], columns)
    ordered = orderings(estimates, ["task", "step"])
    cell = lambda r, c: f"{r[c]:.3g} [{r[c + '_low']:.3g}, {r[c + '_high']:.3g}]"  # noqa: E731
    tables = []
    for (task, step), part in summary.groupby(["task", "step"], sort=False):
        refs = frame[(frame.role == "reference") & (frame.task == task) & (frame.step == step)]
        first = refs.iloc[0]
        head = (f"{task} at step {step}, over {refs.instance.nunique()} instances: "
                f"{span(refs.rows, 'd')} quantizer groups x {int(first.categories)} codes as one row; ")
        if first.reference_samples:
            head += (f"reference: mean of {int(first.reference_samples)} x {first.estimator}, its error bar "
                     f"{span(refs.reference_relative_error, '.3f')} of ||ref||")
        else:
            head += f"reference: {first.estimator}"
        rows = [(r["label"], *(cell(r, c) for c in columns)) for _, r in part.iterrows()]
        lines = format_orderings(ordered[(ordered.task == task) & (ordered.step == step)])
        tables.append(render(head, ["estimator", "bias/||ref||", "std/||ref||", "MSE/||ref||^2", "cosine"], rows,
                             width=width) + "\nRelative MSE, lower first:\n" + "\n".join(f"  {x}" for x in lines))
    return "\n\n".join(tables)
