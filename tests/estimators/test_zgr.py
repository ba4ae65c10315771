"""ZGR: the backward is the paper's coordinate formula, (straight-through + DARN)/2, equal to ReinMax at tau = 1,
the tau -> 0 limit of Gumbel-Rao (binary, by quadrature), unbiased for quadratic losses and biased beyond them,
with the enumerated mean and variance matching the sampled ones."""

import math

import pytest
import torch
from scipy import integrate
from scipy.special import expit

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.estimators import make_estimator
from gumbench.kernels.reference import sample_categorical
from tests.estimators.enumeration import (
    LEVEL,
    SAMPLES,
    check_against_enumeration,
    enumerate_estimates,
    jacobian_product,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def zgr_formula(p, index, u):
    """Shekhovtsov (2023), the coordinate form: p_i (u_i - u_x) / 2 for i != x, (u_x - p . u) / 2 at the sample x."""
    at = index.unsqueeze(-1)
    u_x = u.gather(-1, at)
    grad = p * (u - u_x) / 2
    return grad.scatter(-1, at, (u_x - (p * u).sum(-1, keepdim=True)) / 2)


def zgr_estimate(logits):
    p = torch.softmax(logits.double(), -1)
    return lambda index, u: zgr_formula(p.expand_as(u), index, u)


def linear_backward(spec, logits, upstream, seed):
    leaf = logits.clone().requires_grad_(True)
    out = make_estimator(spec)(leaf, lambda y: (y * upstream).sum((-2, -1)), generator=gen(seed))
    out.surrogate.sum().backward()
    return out, leaf.grad


def test_zgr_backward_is_the_coordinate_formula():
    logits = torch.randn(64, 3, 5, generator=gen(0), dtype=torch.float64)
    logits[:8, :, 3] = -math.inf  # masked: never drawn, gradient 0
    upstream = torch.randn(64, 3, 5, generator=gen(1), dtype=torch.float64)
    out, grad = linear_backward("zgr", logits, upstream, seed=2)
    assert torch.equal(out.indices, sample_categorical(logits, gen(2)))
    assert torch.equal(out.value, torch.nn.functional.one_hot(out.indices, 5).double())
    torch.testing.assert_close(grad, zgr_formula(torch.softmax(logits, -1), out.indices, upstream))
    assert (grad[:8, :, 3] == 0).all()


def test_zgr_is_the_average_of_straight_through_and_darn_and_equals_reinmax_at_tau_1():
    """ZGR = (ST + DARN)/2, DARN being (u . (D - p)) (D - p); and, expanding ReinMax's 2 J((p + D)/2) - J(p)/2
    with diag(D) = D D^T, the same matrix (J(p) + (D - p)(D - p)^T)/2: the two estimators coincide at tau = 1."""
    logits = torch.randn(256, 2, 6, generator=gen(3), dtype=torch.float64)
    upstream = torch.randn(256, 2, 6, generator=gen(4), dtype=torch.float64)
    out, zgr = linear_backward("zgr", logits, upstream, seed=5)
    st_out, st = linear_backward("straight-through[tau=1]", logits, upstream, seed=5)
    rm_out, reinmax = linear_backward("reinmax[tau=1]", logits, upstream, seed=5)
    assert torch.equal(out.indices, st_out.indices) and torch.equal(out.indices, rm_out.indices)  # the same draws
    p = torch.softmax(logits, -1)
    d = torch.nn.functional.one_hot(out.indices, 6).double() - p
    darn = (upstream * d).sum(-1, keepdim=True) * d
    torch.testing.assert_close(st, jacobian_product(p, upstream))
    torch.testing.assert_close(zgr, (st + darn) / 2)
    torch.testing.assert_close(zgr, reinmax)


def gumbel_rao_binary_limit(a, chosen, tau):
    """E[sigmoid'((a + L)/tau)/tau | D = chosen] for a binary variable (L = g1 - g0 logistic, D = 1 iff a + L > 0):
    the Gumbel-Rao coefficient of u1 - u0 in the gradient for logit 1, by quadrature around the kink at L = -a."""
    density = lambda t: expit(t) * expit(-t)  # noqa: E731  (the logistic density)
    kernel = lambda t: density((a + t) / tau) / tau * density(t)  # noqa: E731
    lo, hi = (-a, -a + 60 * tau) if chosen else (-a - 60 * tau, -a)  # the kernel is negligible beyond 60 tau
    mass, _ = integrate.quad(kernel, lo, hi, epsabs=0, epsrel=1e-10, limit=200)
    return mass / (expit(a) if chosen else expit(-a))


@pytest.mark.parametrize("a", [-2.0, 0.0, 0.7, 3.0])
def test_zgr_is_the_zero_temperature_limit_of_gumbel_rao_for_a_binary_variable(a):
    """The paper's defining property: E[J_tau(g) | D] u / tau -> ZGR as tau -> 0; for V = 2 the coefficient of
    u1 - u0 tends to (1 - p)/2 given D = 1 and p/2 given D = 0, p = sigmoid(a), which the estimator's backward gives."""
    logits = torch.tensor([[0.0, a]], dtype=torch.float64).expand(4000, 1, 2)
    upstream = torch.tensor([0.0, 1.0], dtype=torch.float64)  # u1 - u0 = 1
    out, grad = linear_backward("zgr", logits, upstream, seed=6)
    for chosen in (0, 1):
        rows = out.indices[:, 0] == chosen
        assert rows.any()
        coefficient = grad[rows, 0, 1]
        assert torch.equal(coefficient, torch.full_like(coefficient, float(coefficient[0])))  # a function of D only
        limit = gumbel_rao_binary_limit(a, chosen, tau=1e-4)
        assert abs(float(coefficient[0]) - limit) <= 1e-3 * limit, (chosen, float(coefficient[0]), limit)
        assert (
            abs(gumbel_rao_binary_limit(a, chosen, tau=0.5) - limit) > 1e-2 * limit
        )  # at tau = 0.5 it is not there yet


@pytest.mark.parametrize("task", ["categorical[groups=2,categories=4]", "polynomial[L=4,p=2]", "bernoulli",
                                  "categorical[loss=linear,groups=2,categories=5]"])
def test_zgr_is_unbiased_for_quadratic_losses(task):
    toy = make_task(task)
    mean, variance = enumerate_estimates(toy.logits, toy.loss, zgr_estimate(toy.logits))
    exact, _ = exact_gradient(toy.logits, toy.loss)
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-6 * float(exact.abs().max()))  # an identity
    s = gradient_statistics("zgr", toy.logits, toy.loss, SAMPLES, seed=7, confidence=LEVEL)
    assert s.bias.low == 0.0, s.bias
    check_against_enumeration(s, mean, variance)


@pytest.mark.parametrize("task", ["polynomial[L=4,p=3]", "polynomial[L=3,p=1.5]"])
def test_zgr_is_biased_beyond_quadratics(task):
    toy = make_task(task)
    mean, variance = enumerate_estimates(toy.logits, toy.loss, zgr_estimate(toy.logits))
    exact, _ = exact_gradient(toy.logits, toy.loss)
    s = gradient_statistics("zgr", toy.logits, toy.loss, SAMPLES, seed=8, confidence=LEVEL)
    assert s.bias.low > 0, s.bias
    assert s.bias.contains(float((mean - exact).norm())), (s.bias, float((mean - exact).norm()))
    check_against_enumeration(s, mean, variance)
