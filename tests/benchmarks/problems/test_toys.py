"""Toy tasks: exact gradients by enumeration equal autograd of the analytic expectation; enumeration is bounded; a loss
that is not one finite value per configuration is named; parameters out of range are refused at construction."""

import math

import pytest
import torch

from gumbench.benchmarks import exact_gradient, make_task
from gumbench.benchmarks.problems.enumeration import MAX_ENUMERATION, enumerate_configurations, exact_expectation
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


@pytest.mark.parametrize("spec, message", [
    ("categorical[seed=-1]", "categorical: seed must be in [0, 9223372036854775807], got -1"),
    (f"polynomial[seed={2**64}]", f"polynomial: seed must be in [0, 9223372036854775807], got {2**64}"),
    ("categorical[scale=nan]", "categorical: scale must be a finite number in (0, 1000], got nan"),
    ("categorical[scale=inf]", "categorical: scale must be a finite number in (0, 1000], got inf"),
    ("categorical[scale=1e300]", "categorical: scale must be a finite number in (0, 1000], got 1e+300"),
    ("categorical[groups=0]", "categorical: groups must be >= 1, got 0"),
    ("categorical[categories=10000000000]",
     "categorical: groups x categories must be <= 1,048,576 (memory), got 4 x 10000000000 = 40000000000"),
    ("categorical[groups=100000,categories=100000]",
     "categorical: groups x categories must be <= 1,048,576 (memory), got 100000 x 100000 = 10000000000"),
    ("polynomial[L=10000000000]", "polynomial: L must be in [1, 524288], got 10000000000"),
])
def test_parameters_out_of_range_are_refused_before_the_logits_are_drawn(spec, message):
    with pytest.raises(GumbenchError) as caught:
        make_task(spec)
    assert str(caught.value) == message


def test_the_largest_allowed_toys_build():
    assert make_task("categorical[groups=1024,categories=1024,scale=1000]").shape == (1024, 1024)
    assert make_task("polynomial[L=524288]").shape == (524288, 2)


@pytest.mark.parametrize(
    "loss, message",
    [
        (lambda y: 0.5, "loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got float"),
        (lambda y: None, "loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got NoneType"),
        (lambda y: y.sum(), "loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got ()"),
        (
            lambda y: torch.where(y[..., 2, 1] > 0.5, math.nan, y[..., 0, 0]),
            "loss_fn returned nan for configuration (0, 0, 1) (the category of each group); "
            "it must be finite for every configuration",
        ),
        (
            lambda y: -torch.log(y[..., 1, 0]),
            "loss_fn returned inf for configuration (0, 1, 0) (the category of each group); "
            "it must be finite for every configuration",
        ),
    ],
)
def test_enumeration_names_a_loss_that_is_not_one_finite_value_per_configuration(loss, message):
    with pytest.raises(GumbenchError) as caught:
        exact_gradient(torch.zeros(3, 2), loss)
    assert str(caught.value) == message
