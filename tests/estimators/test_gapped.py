"""Gapped straight-through (GST): consistent perturbed logits with a gap, GST-p's gap, backward and statistics by
enumeration."""

import math

import pytest
import torch

from gumbench.benchmarks import gradient_statistics, make_task
from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator
from gumbench.estimators.gapped import gapped_logits, probability_gap
from gumbench.kernels.reference import conditional_gumbel, sample_categorical
from tests.estimators.enumeration import (
    LEVEL,
    SAMPLES,
    check_against_enumeration,
    enumerate_estimates,
    jacobian_product,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def gst_estimate(logits, tau, variant):
    theta = logits.double()

    def estimate(index, u):
        # the perturbation written out independently of the implementation
        top = theta.max(-1, keepdim=True).values
        log_p = torch.log_softmax(theta, -1).expand(*index.shape, -1)
        p = log_p.gather(-1, index.unsqueeze(-1)).exp()
        gap = -torch.log1p(-p) / p if variant == "p" else torch.ones_like(p)
        perturbed = torch.minimum(theta, top - gap).scatter(-1, index.unsqueeze(-1), top.expand(*index.shape, 1))
        return jacobian_product(torch.softmax(perturbed / tau, -1), u) / tau

    return estimate


@pytest.mark.parametrize("variant", ["1.0", "p"])
def test_gapped_logits_are_consistent_with_a_gap(variant):
    logits = 3 * torch.randn(500, 7, generator=gen(0), dtype=torch.float64)
    index = sample_categorical(logits, gen(1))
    perturbed = gapped_logits(logits, index, variant)
    assert (perturbed.argmax(-1) == index).all()
    top = perturbed.gather(-1, index.unsqueeze(-1))
    others = perturbed.scatter(-1, index.unsqueeze(-1), float("-inf")).max(-1, keepdim=True).values
    p = torch.softmax(logits, -1).gather(-1, index.unsqueeze(-1))
    gap = -torch.log1p(-p) / p if variant == "p" else torch.ones_like(p)
    assert (top - others >= gap - 1e-12).all()
    torch.testing.assert_close(
        top, logits.max(-1, keepdim=True).values
    )  # the sample is raised to the top logit, no higher


def test_gst_p_gap_is_the_expected_gumbel_gap_of_a_binary_variable():
    """-log(1 - p)/p = E[x_D - x_other | D] for the Gumbel-perturbed logits x of a binary variable."""
    n = SAMPLES
    for a in (-2.0, 0.0, 1.0, 3.0):
        logits = torch.tensor([0.0, a], dtype=torch.float64).expand(n, 2)
        for chosen in (0, 1):
            index = torch.full((n,), chosen)
            x = logits + conditional_gumbel(logits, index, 1, generator=gen(chosen))[0]
            gap = x[:, chosen] - x[:, 1 - chosen]
            kappa = float(probability_gap(torch.log_softmax(logits[:1], -1), index[:1]))
            assert abs(float(gap.mean()) - kappa) <= 4 * float(gap.std()) / math.sqrt(n), (
                a,
                chosen,
                float(gap.mean()),
                kappa,
            )


@pytest.mark.parametrize("variant", ["1.0", "p"])
def test_gst_backward_and_statistics_match_the_enumerated_estimator(variant):
    toy = make_task("categorical[groups=2,categories=4]")
    spec = f"gst[tau=0.5,variant={variant}]"
    logits = toy.logits.expand(32, 2, 4).clone().requires_grad_(True)
    upstream = torch.randn(32, 2, 4, generator=gen(0))
    out = make_estimator(spec)(logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(1))
    out.surrogate.sum().backward()
    torch.testing.assert_close(logits.grad, gst_estimate(toy.logits, 0.5, variant)(out.indices, upstream).float())
    mean, variance = enumerate_estimates(toy.logits, toy.loss, gst_estimate(toy.logits, 0.5, variant))
    s = gradient_statistics(spec, toy.logits, toy.loss, SAMPLES, seed=6, confidence=LEVEL)
    check_against_enumeration(s, mean, variance)


def test_gst_variant_names():
    assert make_estimator("gst[variant=1.0]").spec == "gst[tau=1,variant=1.0]"
    assert make_estimator("gst[variant=1]").params["variant"] == "1.0"
    assert make_estimator(make_estimator("gst[variant=p]").spec).params["variant"] == "p"
    with pytest.raises(GumbenchError, match="variant must be one of 1.0, p"):
        make_estimator("gst[variant=2]")
