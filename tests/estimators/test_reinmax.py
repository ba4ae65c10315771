"""ReinMax: the backward is the second-order formula, unbiased at tau = 1 for quadratic losses, biased otherwise, tau >=
1."""

import pytest
import torch

from gumbench.benchmarks import exact_gradient, gradient_statistics, make_task
from gumbench.errors import GumbenchError
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


def reinmax_estimate(logits, tau):
    pi = torch.softmax(logits.double(), -1)
    soft = torch.softmax(logits.double() / tau, -1)

    def estimate(index, u):
        half = (soft + torch.nn.functional.one_hot(index, logits.shape[-1]).double()) / 2
        return 2 * jacobian_product(half, u) - 0.5 * jacobian_product(pi.expand_as(u), u)

    return estimate


def test_reinmax_backward_is_the_second_order_formula():
    logits = torch.randn(16, 3, 5, generator=gen(0), requires_grad=True)
    upstream = torch.randn(16, 3, 5, generator=gen(1))
    out = make_estimator("reinmax[tau=2]")(logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(2))
    out.surrogate.sum().backward()
    assert torch.equal(out.indices, sample_categorical(logits.detach(), gen(2)))
    half = (torch.softmax(logits.detach() / 2, -1) + torch.nn.functional.one_hot(out.indices, 5)) / 2
    expected = 2 * jacobian_product(half, upstream) - 0.5 * jacobian_product(
        torch.softmax(logits.detach(), -1), upstream
    )
    torch.testing.assert_close(logits.grad, expected)
    assert torch.equal(out.value, torch.nn.functional.one_hot(out.indices, 5).float())


@pytest.mark.parametrize(
    "task",
    ["categorical[groups=2,categories=4]", "polynomial[L=4,p=2]", "categorical[loss=linear,groups=2,categories=5]"],
)
def test_reinmax_at_tau_1_is_unbiased_for_quadratic_losses(task):
    """The trapezoid rule behind ReinMax is exact for quadratics: E[estimate] = exact gradient."""
    toy = make_task(task)
    mean, variance = enumerate_estimates(toy.logits, toy.loss, reinmax_estimate(toy.logits, 1.0))
    exact, _ = exact_gradient(toy.logits, toy.loss)
    torch.testing.assert_close(mean, exact, rtol=0, atol=1e-6 * float(exact.abs().max()))  # an identity
    s = gradient_statistics("reinmax[tau=1]", toy.logits, toy.loss, SAMPLES, seed=4, confidence=LEVEL)
    assert s.bias.low == 0.0, s.bias
    check_against_enumeration(s, mean, variance)


@pytest.mark.parametrize(
    "spec, task", [("reinmax[tau=1]", "polynomial[L=4,p=3]"), ("reinmax[tau=2]", "categorical[groups=2,categories=4]")]
)
def test_reinmax_is_biased_beyond_quadratics_or_above_tau_1(spec, task):
    toy = make_task(task)
    tau = make_estimator(spec).params["tau"]
    mean, variance = enumerate_estimates(toy.logits, toy.loss, reinmax_estimate(toy.logits, tau))
    exact, _ = exact_gradient(toy.logits, toy.loss)
    s = gradient_statistics(spec, toy.logits, toy.loss, SAMPLES, seed=5, confidence=LEVEL)
    assert s.bias.low > 0, s.bias
    assert s.bias.contains(float((mean - exact).norm())), (s.bias, float((mean - exact).norm()))
    check_against_enumeration(s, mean, variance)


def test_reinmax_rejects_tau_below_one():
    with pytest.raises(GumbenchError, match="tau must be >= 1"):
        make_estimator("reinmax[tau=0.5]")
