"""Bits per frame of a training run: log2 of the code space one frame is quantized to, summed over its groups and,
within a group, over the books it takes one code from (residual stages).

    bits = G x sum_s log2 |book_s|

with the bottleneck as :func:`gumbench.benchmarks.training.train` builds it: the task's G groups of K codes,
K sized from an implicit code space where the quantizer has one (``TrainingTask.quantizer_sizes``, what
``TrainingTask.sized_for`` applies: FSQ/FSP prod(levels), LFQ/BSQ 2^dimension, residual stages of these S x
their codes), and the books from the estimator (``VQEstimator.book_sizes``: one book of K for a single-stage
quantizer, the S stage books of residual-vq, whose code spaces multiply). A categorical estimator picks one of
the K categories per group (latent), so a categorical VAE of L latents of C categories has L log2 C bits.
Quantizer dropout (residual-vq ``dropout=true``) uses fewer stages on some training rows; the bits count every
stage, as evaluation uses them all.
"""

from __future__ import annotations

import math


def bits_per_frame(task, estimator) -> float:
    """Bits per frame of training ``task`` (a spec or a built task) with ``estimator`` (a spec or an estimator)."""
    from gumbench.benchmarks.training import make_training_task
    from gumbench.estimators import make_estimator

    task, estimator = make_training_task(task), make_estimator(estimator)
    space = task.quantizer_sizes(estimator)  # None: the task's own sizes
    codes = task.codes if space is None else space[0]
    sizes = estimator.book_sizes(codes) if hasattr(estimator, "book_sizes") else (codes,)
    return task.groups * sum(math.log2(size) for size in sizes)


def bits_text(bits: float) -> str:
    """``7`` for 7.0, ``16.6`` for 2 log2(320): three significant digits, integers exact."""
    return f"{bits:.0f}" if abs(bits - round(bits)) < 1e-9 else f"{bits:.3g}"
