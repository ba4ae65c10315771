"""REINFORCE: unbiased with every baseline, and its one-sample variance equals the enumerated closed form."""

import pytest
from scipy import stats

from gumbench.benchmarks import gradient_statistics, make_task
from tests.estimators.enumeration import SAMPLES, reinforce_variance_closed_form


@pytest.mark.parametrize("baseline", ["none", "ema", "loo"])
@pytest.mark.parametrize(
    "task", ["categorical[groups=2,categories=4]", "categorical[loss=linear,groups=3,categories=3]", "bernoulli"]
)
def test_reinforce_is_unbiased(baseline, task):
    toy = make_task(task)
    s = gradient_statistics(f"reinforce[baseline={baseline}]", toy.logits, toy.loss, SAMPLES, seed=3)
    # the CI of ||bias||^2 (debiased) reaches zero for an unbiased estimator
    assert s.bias.low == 0.0, s.bias
    # and the mean is close to the exact gradient coordinate-wise: within 4 standard errors
    se = (s.coordinate_variance / SAMPLES).sqrt()
    assert ((s.mean_gradient - s.exact_gradient).abs() <= 4 * se + 1e-12).all()


@pytest.mark.parametrize(
    "task", ["categorical[groups=1,categories=6]", "categorical[groups=2,categories=4]", "polynomial[L=4,p=3]"]
)
def test_reinforce_variance_matches_closed_form(task):
    toy = make_task(task)
    closed = reinforce_variance_closed_form(toy.logits, toy.loss)
    s = gradient_statistics("reinforce", toy.logits, toy.loss, SAMPLES, seed=11)
    assert s.total_variance.contains(float(closed.sum())), (s.total_variance, float(closed.sum()))
    # coordinates: 4 standard errors (se from the CI half width)
    half = (s.coordinate_variance_high - s.coordinate_variance) / stats.t.ppf(0.975, 49)
    assert ((s.coordinate_variance - closed).abs() <= 4 * half + 1e-12).all()
