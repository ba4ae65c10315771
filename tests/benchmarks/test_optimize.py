"""Toy optimization: RLOO lowers the exact expected loss by far more than its run-to-run noise; runs are seeded; bad
settings
refused with one line naming the setting and what is allowed, before any step."""

import math

import numpy as np
import pytest
from scipy import stats

from gumbench.benchmarks import make_task
from gumbench.benchmarks.optimize import optimize, optimize_many
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.plugin import MAX_ELEMENTS

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
    assert set(a["estimator"]) == {"reinforce[baseline=ema,samples=1,decay=0.9]"} and set(a["label"]) == {
        "reinforce[baseline=ema]"
    }
    assert est.ema_loss is None, "optimize works on a copy: the EMA baseline of the caller's estimator is untouched"


def test_vq_estimators_and_bad_settings_are_rejected():
    with pytest.raises(GumbenchError, match="is a VQ estimator; toy optimization needs a categorical one"):
        optimize("bernoulli", "vq-commitment", steps=5)
    with pytest.raises(GumbenchError, match="unknown estimator"):
        optimize("bernoulli", "nope", steps=5)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be in [1, 1000000], got 0"),
    ({"steps": -3}, "steps must be in [1, 1000000], got -3"),
    ({"steps": 10**12}, "steps must be in [1, 1000000], got 1000000000000"),  # used to run until killed
    ({"steps": 2.5}, "steps must be an integer in [1, 1000000], got 2.5"),
    ({"batch": 0}, "batch must be >= 1, got 0"),
    ({"batch": True}, "batch must be an integer >= 1, got True"),
    ({"batch": 10**12}, f"batch x logits x draws per estimate of st-gumbel = {10**12} x 6 x 1 elements at once; "
                        f"at most {MAX_ELEMENTS:,} are allowed (use batch <= {MAX_ELEMENTS // 6})"),
    ({"lr": 0.0}, "lr must be a finite number in (0, 1000], got 0.0"),
    ({"lr": -0.1}, "lr must be a finite number in (0, 1000], got -0.1"),
    ({"lr": float("nan")}, "lr must be a finite number in (0, 1000], got nan"),
    ({"lr": 1e30}, "lr must be a finite number in (0, 1000], got 1e+30"),
    ({"seed": -1}, "seed must be in [0, 9223372036854775807], got -1"),
    ({"seed": 2**64}, f"seed must be in [0, 9223372036854775807], got {2**64}"),
])
def test_bad_settings_are_refused_before_the_first_step(kwargs, message, monkeypatch):
    monkeypatch.setattr("torch.optim.Adam", lambda *a, **k: pytest.fail("an optimizer was built"))
    with pytest.raises(GumbenchError) as caught:
        optimize("bernoulli", "st-gumbel", **kwargs)
    assert str(caught.value) == "optimize: " + message


def test_every_estimator_is_checked_before_any_runs(monkeypatch):
    """Gumbel-Rao's M draws per estimate multiply the batch's memory: refused before st-gumbel, listed first, runs."""
    monkeypatch.setattr("gumbench.benchmarks.optimize.optimize", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(GumbenchError) as caught:
        optimize_many(
            "categorical[groups=1,categories=1000]", ["st-gumbel", "gumbel-rao[samples=1000]"], batch=1024, steps=5
        )
    assert str(caught.value) == (
        "optimize: batch x logits x draws per estimate of gumbel-rao[samples=1000] = 1024 x 1000 x 1000 "
        f"elements at once; at most {MAX_ELEMENTS:,} are allowed (use batch <= {MAX_ELEMENTS // 10**6})"
    )
