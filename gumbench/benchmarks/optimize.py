"""Short optimization runs on the toys: minimize E[f(z)] over the logits with an estimator.

Each step draws ``batch`` estimates (rows of repeated logits, one backward), averages
them, and takes an Adam step. The per-step record holds the sampled surrogate loss
and the exact expected loss at the current logits (analytic or by enumeration), so
curves compare estimators on what is actually optimized, free of sampling noise.
"""

from __future__ import annotations

import copy
import time

import torch

from gumbench.errors import GumbenchError
from gumbench.plugin import LEARNING_RATE, SEED, STEPS, Range, check_integer, check_number


def _prepare(task, estimator, steps, lr, batch, seed):
    """(toy, a copy of the estimator) with every setting checked; nothing has run yet."""
    from gumbench.benchmarks.problems import make_problem, registry
    from gumbench.benchmarks.problems.base import rows_at_once
    from gumbench.estimators import VQEstimator, make_estimator

    toy = make_problem(task)
    if not toy.has_logits:
        with_logits = ", ".join(name for name, cls in registry.classes().items() if cls.has_logits)
        raise GumbenchError(f"optimize: {toy.spec} has no logits to optimize; problems with logits: {with_logits}")
    est = copy.deepcopy(make_estimator(estimator))
    if isinstance(est, VQEstimator):
        raise GumbenchError(f"{est.spec} is a VQ estimator; toy optimization needs a categorical one")
    check_integer("optimize", "steps", steps, STEPS)
    rows_at_once("optimize", "batch", est, toy.logits, check_integer("optimize", "batch", batch, Range(1)))
    check_number("optimize", "lr", lr, LEARNING_RATE)
    check_integer("optimize", "seed", seed, SEED)
    return toy, est


def optimize(task, estimator, *, steps: int = 200, lr: float = 0.1, batch: int = 16, seed: int = 0):
    """Run one estimator on one toy; returns a tidy DataFrame, one row per step (step 0 = start).

    ``steps`` is at most 1,000,000, ``lr`` in (0, 1000], ``seed`` in [0, 2^63 - 1]; ``batch`` x the toy's
    logits x the estimator's draws per estimate at most :data:`gumbench.plugin.MAX_ELEMENTS`.
    """
    import pandas as pd

    toy, est = _prepare(task, estimator, steps, lr, batch, seed)
    est.train()
    logits = toy.logits.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    generator = torch.Generator().manual_seed(int(seed))
    rows = []

    def record(step, sampled, seconds):
        with torch.no_grad():
            expected = float(toy.expected_loss(logits.detach().double()))
        rows.append({"task": toy.spec, "estimator": est.spec, "label": est.label, "seed": seed,
                     "step": step, "sampled_loss": sampled, "expected_loss": expected, "step_seconds": seconds})

    record(0, float("nan"), 0.0)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        out = est(logits.unsqueeze(0).expand(batch, *logits.shape), toy.loss, generator=generator)
        out.surrogate.mean().backward()
        optimizer.step()
        record(step, float(out.loss.detach().mean()), time.perf_counter() - start)
    return pd.DataFrame(rows)


def optimize_many(task, estimators=None, **kwargs):
    """:func:`optimize` for each estimator (default: every non-VQ estimator); one DataFrame."""
    import pandas as pd

    from gumbench.benchmarks.gradstats import default_estimators
    from gumbench.estimators import make_estimator

    names = list(estimators) if estimators else default_estimators()
    built = [make_estimator(n) for n in names]
    settings = {"steps": 200, "lr": 0.1, "batch": 16, "seed": 0, **kwargs}
    for est in built:  # every name and setting before the first run
        _prepare(task, est, **settings)
    return pd.concat([optimize(task, est, **kwargs) for est in built], ignore_index=True)
