"""The PyTorch reference: safe uniforms and Gumbel noise, and the exact conditional Gumbel sampler of Gumbel-Rao."""

import math

import torch
from scipy import stats

from gumbench.kernels.reference import conditional_gumbel, gumbel_from_uniform, sample_categorical, uniform_from_integers

SAMPLES = 20_000


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_uniform_ends_give_finite_gumbel_noise():
    for dtype, bits in ((torch.float32, 23), (torch.float64, 52)):
        u = uniform_from_integers(torch.tensor([0, 2**bits - 1]), dtype)
        assert (u > 0).all() and (u < 1).all()
        g = gumbel_from_uniform(u)
        assert torch.isfinite(g).all()
    # the naive conversion would have hit 1.0 in fp32 -- the reason for the scheme
    assert torch.tensor(1 - 2**-25, dtype=torch.float32) == 1.0


def test_conditional_sampler_marginal_is_iid_gumbel():
    """With k ~ Cat(softmax(logits)) and g drawn given argmax(logits + g) = k, g is iid Gumbel(0, 1)."""
    logits = torch.tensor([1.5, 0.2, -0.7, 0.0, 2.0, -3.0])
    n, v = SAMPLES, logits.numel()
    rows = logits.expand(n, v)
    k = sample_categorical(rows, gen(0))
    g = conditional_gumbel(rows, k, 2, generator=gen(1))  # two conditional draws per row
    assert (torch.argmax(rows + g, -1) == k).all(), "the condition holds for every draw"
    for m in range(2):
        for j in range(v):
            p = stats.kstest(g[m, :, j].double().numpy(), stats.gumbel_r.cdf).pvalue
            assert p > 1e-3 / v, (m, j, p)  # family-wise 0.1% per draw
    corr = torch.corrcoef(g[0].double().T)
    off_diagonal = corr[~torch.eye(v, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 4 / math.sqrt(n), "independent coordinates: |r| within 4 standard errors"


def test_conditional_sampler_is_finite_for_extreme_and_masked_logits():
    row = torch.tensor([1e4, -1e4, 0.0, float("-inf"), 1e4 - 1.0])
    for dtype in (torch.float32, torch.float64):
        rows = row.to(dtype).expand(4096, 5)
        k = sample_categorical(rows, gen(0))
        g = conditional_gumbel(rows, k, 3, generator=gen(1))
        assert torch.isfinite(g).all() and not (k == 3).any()
        if dtype == torch.float64:  # in fp32 two logits of 1e4 sit 1e-3 apart, below the rounding of the perturbed values
            assert (torch.argmax(rows + g, -1) == k).all()
