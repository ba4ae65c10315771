"""What a sweep checks of each (task, estimator) pair before anything runs, beyond its names: that a training
task can train with the estimator (its bottleneck's codebook fits the estimator's codes), and that the pair's
estimated peak memory (:mod:`gumbench.footprint`) is within the limit. Called by
:func:`gumbench.benchmarks.sweep.config.expand_units`."""

from __future__ import annotations


def check_pair(kind: str, task, est, budget: int, limit, study: bool = False) -> None:
    """Refuse, before anything runs, a (task, estimator) pair of a unit that would fail when it runs: a training
    task that cannot train with the estimator, a run whose estimated peak memory exceeds ``limit``."""
    from gumbench.footprint import check_peak, combined

    if kind == "training" and study:  # gradient checkpoints: a categorical VAE with enumerable codes
        from gumbench.benchmarks.problems.elbo import checked_study

        checked_study(task, est)
    if kind == "training":
        task.check_estimator(est)
        first_call(task, est)
        peak = combined(task.peak_memory(est), est.peak_memory())
    else:
        task.rows_at_once(est, None, budget, "sweep")
        peak = combined(task.peak_memory(est, budget), est.peak_memory())
    check_peak(f"[{kind}] {est.label} on {task.spec}", peak, limit)


def first_call(task, est) -> None:
    """A VQ estimator's checks of the codebook it is given (an implicit codebook's codes and dimension, a residual
    quantizer's stages), made on the task's model before anything runs: the model is built from a fresh copy of
    the estimator in eval mode (no k-means, no codebook update) and each bottleneck quantizes one row of zeros.
    The global random state is left as it was."""
    import torch

    from gumbench.benchmarks.training.base import DiscreteBottleneck
    from gumbench.estimators import VQEstimator

    if not isinstance(est, VQEstimator):
        return
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model = task.build(est.with_params()).eval()
        for module in model.modules():
            if isinstance(module, DiscreteBottleneck):
                module(torch.zeros(1, module.project.in_features), lambda quantized: quantized.sum(-1))
