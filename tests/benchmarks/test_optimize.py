"""Toy optimization: RLOO lowers the exact expected loss by far more than its run-to-run noise; runs are seeded; bad input refused."""

import math

import numpy as np
import pytest
from scipy import stats

from gumbench.benchmarks import make_task
from gumbench.benchmarks.optimize import optimize
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator

TASK = "polynomial[L=16]"  # f(z) = (1/16) sum_i (z_i - 0.45)^2: minimum 0.45^2 = 0.2025 at z = 0


def test_rloo_lowers_the_exact_expected_loss_beyond_its_noise():
    toy = make_task(TASK)
    start = float(toy.expected_loss(toy.logits.double()))
    optimum = 0.45**2
    seeds = range(5)
    ends = []
    for seed in seeds:
        frame = optimize(TASK, "reinforce[baseline=loo]", steps=100, seed=seed)
        assert list(frame["step"]) == list(range(101))
        assert frame["expected_loss"].iloc[0] == start and math.isnan(frame["sampled_loss"].iloc[0])
        assert (frame["expected_loss"] >= optimum - 1e-12).all(), "never below the exact minimum"
        ends.append(frame["expected_loss"].iloc[-1])
    decrease = start - np.array(ends)
    # the decrease is random (it depends on the seed): its mean over seeds, less the one-sided 99.9% t bound
    # of its standard error, is still positive ...
    se = decrease.std(ddof=1) / math.sqrt(len(decrease))
    assert decrease.mean() - stats.t.ppf(0.999, len(decrease) - 1) * se > 0, decrease
    # ... and large: every run closes most of the gap to the exact optimum
    assert (decrease > 0.9 * (start - optimum)).all(), (start, ends)


def test_a_seed_fixes_the_run_and_the_callers_estimator_is_left_alone():
    est = make_estimator("reinforce[baseline=ema]")
    a = optimize("bernoulli", est, steps=10, batch=8, seed=3)
    b = optimize("bernoulli", est, steps=10, batch=8, seed=3)
    c = optimize("bernoulli", est, steps=10, batch=8, seed=4)
    assert a.drop(columns="step_seconds").equals(b.drop(columns="step_seconds"))
    assert not a["sampled_loss"].iloc[1:].equals(c["sampled_loss"].iloc[1:])
    assert set(a["estimator"]) == {"reinforce[baseline=ema,samples=1,decay=0.9]"} and set(a["label"]) == {"reinforce[baseline=ema]"}
    assert est.ema_loss is None, "optimize works on a copy: the EMA baseline of the caller's estimator is untouched"


def test_vq_estimators_and_bad_settings_are_rejected():
    with pytest.raises(GumbenchError, match="is a VQ estimator; toy optimization needs a categorical one"):
        optimize("bernoulli", "vq-commitment", steps=5)
    for kwargs in ({"steps": 0}, {"batch": 0}, {"steps": -3}):
        with pytest.raises(GumbenchError, match="steps and batch must be >= 1"):
            optimize("bernoulli", "st-gumbel", **kwargs)
    for lr in (0.0, -0.1, float("nan")):
        with pytest.raises(GumbenchError, match="lr must be a finite number > 0"):
            optimize("bernoulli", "st-gumbel", steps=5, lr=lr)
    with pytest.raises(GumbenchError, match="unknown estimator"):
        optimize("bernoulli", "nope", steps=5)
