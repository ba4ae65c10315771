"""ReinMax-Rao, ReinMax-CV and FOGZO against their equations (gumbench.estimators.reinmax_variants, fogzo) written here
in float64 on the same noise, and their means against closed forms by enumeration."""

import pytest
import torch

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.estimators import make_estimator
from gumbench.kernels.reference import conditional_gumbel, sample_categorical
from tests.estimators.enumeration import (
    check_against_enumeration,
    enumerate_estimates,
    jacobian_product,
    mean_difference_within,
)
from tests.estimators.test_reinmax import reinmax_estimate


def gen(seed):
    return torch.Generator().manual_seed(seed)


def linear_loss(upstream):
    return lambda y: (y * upstream.to(y.dtype)).sum((-2, -1))


def test_reinmax_rao_backward_is_the_averaged_second_order_formula():
    logits = torch.randn(16, 3, 5, generator=gen(0), requires_grad=True)
    upstream = torch.randn(16, 3, 5, generator=gen(1))
    out = make_estimator("reinmax-rao[tau=0.7,samples=6]")(logits, linear_loss(upstream), generator=gen(2))
    out.surrogate.sum().backward()
    generator = gen(2)
    index = sample_categorical(logits.detach(), generator)
    noise = conditional_gumbel(logits.detach(), index, 6, generator=generator).double()
    theta, u = logits.detach().double(), upstream.double()
    hard = torch.nn.functional.one_hot(index, 5).double()
    half = (torch.softmax((theta + noise) / 0.7, -1) + hard) / 2
    expected = 2 * jacobian_product(half, u).mean(0) - 0.5 * jacobian_product(torch.softmax(theta, -1), u)
    assert torch.equal(out.indices, index)
    torch.testing.assert_close(logits.grad.double(), expected, rtol=1e-5, atol=1e-6)


def test_reinmax_rao_keeps_the_mean_and_lowers_the_variance():
    """Rao-Blackwellisation: M = 1 and M = 16 have the same mean (within 4 standard errors) and M = 16 a lower
    total variance (disjoint 99.9% intervals)."""
    toy = make_task("categorical[groups=2,categories=4]")
    one = gradient_statistics("reinmax-rao[samples=1]", toy.logits, toy.loss, 8000, seed=1, confidence=0.999)
    many = gradient_statistics("reinmax-rao[samples=16]", toy.logits, toy.loss, 8000, seed=2, confidence=0.999)
    assert mean_difference_within(one, many)
    assert many.total_variance.high < one.total_variance.low, (many.total_variance, one.total_variance)


def reinmax_cv_reference(logits, loss, samples, tau, seed):
    """(1/S) sum_s (R_s - w_s psi_s), w_s the leave-one-out regression coefficient per row, in float64 on the same
    draws."""
    index = sample_categorical(logits, gen(seed), samples=samples)
    theta = logits.double()
    hard = torch.nn.functional.one_hot(index, logits.shape[-1]).double().requires_grad_(True)
    (u,) = torch.autograd.grad(loss(hard).sum(), hard)
    hard = hard.detach()
    pi = torch.softmax(theta, -1)
    estimates, scores = [], []
    for s in range(samples):
        half = (torch.softmax(theta / tau, -1) + hard[s]) / 2
        estimates.append(2 * jacobian_product(half, u[s]) - 0.5 * jacobian_product(pi, u[s]))
        scores.append(hard[s] - pi)
    total = torch.zeros_like(theta)
    for s in range(samples):
        others = [t for t in range(samples) if t != s]
        numerator = sum((estimates[t] * scores[t]).sum((-2, -1)) for t in others)
        denominator = sum((scores[t] ** 2).sum((-2, -1)) for t in others)
        w = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), 0.0)[:, None, None]
        total += (estimates[s] - w * scores[s]) / samples
    return total


def test_reinmax_cv_is_its_equation():
    logits = torch.randn(8, 2, 4, generator=gen(3))
    targets = torch.rand(2, 4, generator=gen(4))
    loss = lambda y: (y - targets.to(y.dtype)).pow(3).abs().sum((-2, -1))  # noqa: E731  (not quadratic)
    leaf = logits.clone().requires_grad_(True)
    make_estimator("reinmax-cv[samples=3,tau=1.5]")(leaf, loss, generator=gen(5)).surrogate.sum().backward()
    torch.testing.assert_close(leaf.grad.double(), reinmax_cv_reference(logits, loss, 3, 1.5, 5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["polynomial[L=4,p=3]", "categorical[groups=2,categories=4]"])
def test_reinmax_cv_has_reinmax_mean_and_less_variance(task):
    """The control variate has mean 0: ReinMax-CV's mean is ReinMax's, enumerated (so its bias is ReinMax's); its
    variance is below that of ReinMax averaged over the same S samples (the enumerated variance / S)."""
    toy = make_task(task)
    mean, variance = enumerate_estimates(toy.logits, toy.loss, reinmax_estimate(toy.logits, 2.0))
    s = gradient_statistics("reinmax-cv[samples=4,tau=2]", toy.logits, toy.loss, 8000, seed=6, confidence=0.999)
    se = (s.coordinate_variance / s.samples).sqrt()
    assert ((s.mean_gradient - mean).abs() <= 4 * se + 1e-6).all(), (s.mean_gradient, mean)
    assert s.total_variance.high < float(variance.sum()) / 4, (s.total_variance, float(variance.sum()) / 4)


def straight_through_mean(logits):
    pi = torch.softmax(logits.double(), -1)
    return lambda index, u: jacobian_product(pi.expand_as(u), u)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_fogzo_bias_is_one_minus_beta_times_straight_throughs(beta):
    """E[FOGZO] = (1 - beta) E[J(pi) u(D)] + beta grad E[f] (RLOO is unbiased), both by enumeration; at beta = 0 it
    is straight-through averaged over S draws (variance / S exactly), at beta = 1 RLOO (unbiased)."""
    toy = make_task("polynomial[L=4,p=3]")
    st_mean, st_variance = enumerate_estimates(toy.logits, toy.loss, straight_through_mean(toy.logits))
    exact, _ = exact_gradient(toy.logits, toy.loss)
    s = gradient_statistics(f"fogzo[beta={beta},samples=3]", toy.logits, toy.loss, 8000, seed=7, confidence=0.999)
    mean = (1 - beta) * st_mean + beta * exact
    if beta == 0:
        check_against_enumeration(s, mean, st_variance / 3)
    else:
        se = (s.coordinate_variance / s.samples).sqrt()
        assert ((s.mean_gradient - mean).abs() <= 4 * se + 1e-6).all(), (s.mean_gradient, mean)
    assert s.bias.contains(float((mean - exact).norm())), (s.bias, float((mean - exact).norm()))


def test_fogzo_is_its_equation():
    logits = torch.randn(8, 2, 4, generator=gen(8))
    upstream = torch.randn(2, 4, generator=gen(9))
    loss = lambda y: (y * upstream.to(y.dtype)).sum((-2, -1)).pow(2)  # noqa: E731
    leaf = logits.clone().requires_grad_(True)
    make_estimator("fogzo[beta=0.25,samples=3]")(leaf, loss, generator=gen(10)).surrogate.sum().backward()
    index = sample_categorical(logits, gen(10), samples=3)
    hard = torch.nn.functional.one_hot(index, 4).double().requires_grad_(True)
    f = loss(hard)
    (u,) = torch.autograd.grad(f.sum(), hard)
    pi = torch.softmax(logits.double(), -1)
    f = f.detach()
    baseline = torch.stack([(f.sum(0) - f[s]) / 2 for s in range(3)])
    terms = [0.75 * jacobian_product(pi, u[s]) + 0.25 * (f[s] - baseline[s])[:, None, None] * (hard[s].detach() - pi)
             for s in range(3)]
    torch.testing.assert_close(leaf.grad.double(), sum(terms) / 3, rtol=1e-5, atol=1e-6)


def test_loss_evaluations():
    assert make_estimator("fogzo[samples=5]").loss_evaluations == 5
    assert make_estimator("reinmax-cv").loss_evaluations == 4
    assert make_estimator("reinmax-rao[samples=30]").loss_evaluations == 1
