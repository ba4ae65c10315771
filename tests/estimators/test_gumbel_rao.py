"""Gumbel-Rao: st-gumbel's mean with lower variance, the backward averages the conditional Jacobians, eval is the
argmax."""

import math

import pytest
import torch

from gumbench.benchmarks import gradient_statistics, make_task
from gumbench.estimators import make_estimator
from gumbench.kernels.reference import conditional_gumbel, sample_categorical
from tests.estimators.enumeration import LEVEL, SAMPLES, jacobian_product, mean_difference_within, standard_error


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_gumbel_rao_with_one_draw_is_st_gumbel_in_distribution():
    toy = make_task("categorical[groups=2,categories=4]")
    st = gradient_statistics("st-gumbel", toy.logits, toy.loss, SAMPLES, seed=1)
    rao = gradient_statistics("gumbel-rao[samples=1]", toy.logits, toy.loss, SAMPLES, seed=2)
    assert mean_difference_within(rao, st)
    se = math.hypot(standard_error(rao.total_variance), standard_error(st.total_variance))
    assert abs(rao.total_variance.value - st.total_variance.value) <= 4 * se, (rao.total_variance, st.total_variance)


@pytest.mark.parametrize("task", ["categorical[groups=2,categories=4]", "polynomial[L=4,p=3]"])
def test_gumbel_rao_has_st_gumbels_mean_and_lower_variance(task):
    """E[J | D] averaged over M draws: same mean; Var drops by (1 - 1/M) E[Var(J u | D)] (total variance)."""
    toy = make_task(task)
    st = gradient_statistics("st-gumbel[tau=0.5]", toy.logits, toy.loss, SAMPLES, seed=1, confidence=LEVEL)
    rao = gradient_statistics("gumbel-rao[tau=0.5,samples=10]", toy.logits, toy.loss, SAMPLES, seed=2, confidence=LEVEL)
    assert mean_difference_within(rao, st)
    assert rao.total_variance.high < st.total_variance.low, (rao.total_variance, st.total_variance)


def test_gumbel_rao_backward_averages_the_conditional_jacobians():
    logits = torch.randn(8, 3, 5, generator=gen(0), requires_grad=True)
    upstream = torch.randn(8, 3, 5, generator=gen(1))
    out = make_estimator("gumbel-rao[tau=0.7,samples=4]")(
        logits, lambda y: (y * upstream).sum((-2, -1)), generator=gen(2)
    )
    out.surrogate.sum().backward()
    # replay the draws: the sample from gen(2), then the conditional noise from the same stream
    stream = gen(2)
    k = sample_categorical(logits.detach(), stream)
    g = conditional_gumbel(logits.detach(), k, 4, generator=stream)
    assert torch.equal(out.indices, k)
    expected = (
        sum(jacobian_product(torch.softmax((logits.detach() + g[m]) / 0.7, -1), upstream) / 0.7 for m in range(4)) / 4
    )
    torch.testing.assert_close(logits.grad, expected)
    torch.testing.assert_close(out.value, torch.nn.functional.one_hot(k, 5).float())


def test_gumbel_rao_eval_is_the_noiseless_argmax():
    logits = torch.randn(50, 2, 6, generator=gen(0))
    out = make_estimator("gumbel-rao").eval()(logits, lambda y: y.sum((-2, -1)), generator=gen(1))
    assert torch.equal(out.indices, logits.argmax(-1))


# --- the conditional sampler, gumbench.kernels.reference (to move to tests/kernels/test_reference.py) --


