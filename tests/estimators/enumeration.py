"""Shared helpers of the estimator tests: exact (enumerated) means and variances, and checks of sampled statistics
against them.

An estimator that is a deterministic function of its sample D (ReinMax, GST) or of a finite random object
(DisARM's antithetic pair) has an exact mean and variance by enumeration; the tests compare them with the
exact gradient (an identity) and with the implementation's sampled statistics (within confidence intervals).
Statistical checks use intervals at confidence LEVEL (99.9%, for the many checks) or 4 standard errors.
"""

import torch
from scipy import stats

from gumbench.benchmarks import exact_gradient
from gumbench.benchmarks.problems.enumeration import enumerate_configurations

SAMPLES = 20_000
LEVEL = 0.999
T_95 = stats.t.ppf(0.975, 49)  # gradient_statistics' default intervals: 95%, 50 jackknife groups


def standard_error(interval, level=0.95):
    """Standard error from a jackknife interval (t on 49 degrees of freedom)."""
    return (interval.high - interval.value) / stats.t.ppf(0.5 + level / 2, 49)


def jacobian_product(p, u):
    """J(p) u with J(p) = diag(p) - p p^T, over the last dim."""
    return p * u - p * (p * u).sum(-1, keepdim=True)


def enumerate_estimates(logits, loss, estimate):
    """Exact mean and per-coordinate variance of an estimator that is a function of D ~ Cat(softmax(logits)).

    ``estimate(index (N, G), u (N, G, V))`` gives the estimate for each configuration, u being the
    gradient of the loss at the one-hot sample.
    """
    logits = logits.double()
    groups, categories = logits.shape
    index = enumerate_configurations(groups, categories)
    onehot = torch.nn.functional.one_hot(index, categories).double().requires_grad_(True)
    (u,) = torch.autograd.grad(loss(onehot).sum(), onehot)
    p = torch.softmax(logits, -1).gather(-1, index.T).prod(0)[:, None, None]
    est = estimate(index, u)
    mean = (p * est).sum(0)
    return mean, (p * (est - mean).pow(2)).sum(0)


def check_against_enumeration(s, mean, variance):
    """Sampled statistics vs the enumerated ones: coordinates within 4 standard errors, total variance in its CI."""
    se = (variance / s.samples).sqrt()
    assert ((s.mean_gradient - mean).abs() <= 4 * se + 1e-6 * mean.abs().max()).all(), (s.mean_gradient, mean)
    assert s.total_variance.contains(float(variance.sum())), (s.total_variance, float(variance.sum()))


def mean_difference_within(a, b, z=4.0):
    """Two statistics' mean gradients agree coordinate-wise within ``z`` standard errors of their difference."""
    se = ((a.coordinate_variance + b.coordinate_variance) / a.samples).sqrt()
    return ((a.mean_gradient - b.mean_gradient).abs() <= z * se + 1e-12).all()


def reinforce_variance_closed_form(logits, loss_fn):
    """Per-coordinate variance of f(z) grad log p(z) with one sample and no baseline.

    grad_{g,v} log p(z) = 1[z_g = v] - pi_{g,v}, so with e the exact gradient
    Var_{g,v} = sum_z p(z) f(z)^2 (1[z_g = v] - pi_{g,v})^2 - e_{g,v}^2.
    """
    logits = logits.double()
    G, V = logits.shape
    pi = torch.softmax(logits, -1)
    index = enumerate_configurations(G, V)
    onehot = torch.nn.functional.one_hot(index, V).double()
    f = loss_fn(onehot)
    p = pi.gather(-1, index.T).prod(0)
    score = onehot - pi  # (N, G, V)
    second = (p * f.pow(2))[:, None, None] * score.pow(2)
    exact, _ = exact_gradient(logits, loss_fn)
    return second.sum(0) - exact.pow(2)
