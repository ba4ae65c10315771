"""Toy tasks: exact gradients by enumeration equal autograd of the analytic expectation; enumeration is bounded."""

import pytest
import torch

from gumbench.benchmarks import exact_gradient, make_task
from gumbench.benchmarks.toys import MAX_ENUMERATION, enumerate_configurations, exact_expectation
from gumbench.errors import GumbenchError


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_exact_gradient_equals_autograd_of_the_analytic_expectation():
    toy = make_task("categorical[loss=linear,groups=3,categories=4]")
    grad, value = exact_gradient(toy.logits, toy.loss)
    logits = toy.logits.double().requires_grad_(True)
    analytic = (torch.softmax(logits, -1) * toy.coefficients.double()).sum()
    analytic.backward()
    torch.testing.assert_close(grad, logits.grad)
    assert value == pytest.approx(float(analytic.detach()))

    toy = make_task("categorical[groups=2,categories=5]")
    grad, value = exact_gradient(toy.logits, toy.loss)
    logits = toy.logits.double().requires_grad_(True)
    t = toy.target.double()
    pi = torch.softmax(logits, -1)
    # for one-hot z_g: ||z_g - t_g||^2 = 1 - 2 t_g[z_g] + ||t_g||^2
    analytic = (1 - 2 * (pi * t).sum(-1) + t.pow(2).sum(-1)).sum()
    analytic.backward()
    torch.testing.assert_close(grad, logits.grad)
    assert value == pytest.approx(float(analytic.detach()))


@pytest.mark.parametrize("task", ["polynomial[L=6,p=1.5]", "bernoulli"])
def test_separable_toys_analytic_expectation_matches_enumeration(task):
    toy = make_task(task)
    logits = torch.randn(toy.shape, generator=gen(2), dtype=torch.float64)
    assert float(toy.expected_loss(logits)) == pytest.approx(float(exact_expectation(logits, toy.loss)), rel=1e-12)


def test_enumeration_refuses_more_than_65536_configurations():
    assert MAX_ENUMERATION == 65_536
    # at the limit: every configuration once, in order (16 binary variables, and 8 groups of 4)
    index = enumerate_configurations(16, 2)
    assert index.shape == (65_536, 16)
    weights = 2 ** torch.arange(15, -1, -1)
    assert torch.equal((index * weights).sum(-1), torch.arange(65_536))
    assert enumerate_configurations(8, 4).shape == (65_536, 8)
    # one configuration more than allowed, in every function that enumerates
    for groups, categories, count in ((17, 2, 131_072), (9, 4, 262_144), (2, 257, 66_049)):
        with pytest.raises(GumbenchError, match=rf"= {count} configurations; at most 65536 are allowed"):
            enumerate_configurations(groups, categories)
    logits = torch.zeros(17, 2, dtype=torch.float64)
    toy = make_task("polynomial[L=17]")
    with pytest.raises(GumbenchError, match="at most 65536"):
        exact_expectation(logits, toy.loss)
    with pytest.raises(GumbenchError, match="at most 65536"):
        exact_gradient(logits, toy.loss)
    # the separable toy's analytic expectation needs no enumeration: all 17 variables at P(x = 1) = 1/2
    expected = 0.5 * (0.45**2 + 0.55**2)
    assert float(toy.expected_loss(logits)) == pytest.approx(expected, rel=1e-12)
