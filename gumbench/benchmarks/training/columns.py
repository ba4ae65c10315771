"""The per-step usage columns of a training run (:func:`gumbench.benchmarks.training.train`'s rows)."""

from __future__ import annotations

import torch

from gumbench.benchmarks.utilization import (
    StageUsageTracker,
    code_perplexity,
    implicit_usage,
    stage_usage,
    summarize,
)


class StageColumns:
    """Per-stage usage columns of the steps whose output carries stage indices (residual quantizers), counted
    in each stage's own book (``VQEstimator.local_stage_codes``); the tracker is made at the first such step."""

    def __init__(self, bottleneck, dead_window: int):
        self.bottleneck, self.dead_window, self.tracker = bottleneck, dead_window, None

    def __call__(self, est, stages: torch.Tensor | None) -> dict[str, float]:
        if stages is None or not self.bottleneck.is_vq:
            return {}
        stages, sizes = est.local_stage_codes(stages, self.bottleneck.codes)
        if self.tracker is None:
            self.tracker = StageUsageTracker(self.bottleneck.groups, sizes, stages.shape[-1], self.dead_window)
        self.tracker.update(stages)
        return stage_usage(stages, sizes).as_row(dead_codes=self.tracker.dead_codes())


def step_usage(indices: torch.Tensor, logits: torch.Tensor | None, codes: int):
    """(usage summary, sampled code perplexity) of a step. With logits (categorical estimators) the
    summary is of the noiseless argmax(logits), as fairseq's ``code_perplexity`` and the ``eval_``
    columns; the sampled code perplexity is of the codes the forward pass used (``indices``:
    argmax(logits + g) for the Gumbel estimators). Without logits (VQ) both are of ``indices``."""
    sampled = float(code_perplexity(indices, codes).sum())
    if logits is None:
        return summarize(indices, codes), sampled
    return summarize(logits.detach().argmax(-1), codes, logits), sampled


def implicit_columns(est, indices: torch.Tensor, bottleneck) -> dict[str, float]:
    """Effective-bits and per-dimension columns for codes that are tuples of per-dimension levels (a VQ
    estimator with ``has_code_digits``: the implicit codebooks); none for other estimators."""
    if not (bottleneck.is_vq and est.has_code_digits):
        return {}
    levels = est.digit_levels(bottleneck.code_dim)
    return implicit_usage(indices, est.index_digits(indices, bottleneck.code_dim), levels).as_row()
