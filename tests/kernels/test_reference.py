"""The PyTorch reference: safe uniforms and Gumbel noise, and the exact conditional Gumbel sampler of Gumbel-Rao."""

import math

import torch
from scipy import stats

from gumbench.kernels.reference import (
    CDF_BITS,
    conditional_gumbel,
    gumbel_from_uniform,
    log_softmax,
    sample_categorical,
    softmax,
    uniform_from_integers,
)

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
        if (
            dtype == torch.float64
        ):  # in fp32 two logits of 1e4 sit 1e-3 apart, below the rounding of the perturbed values
            assert (torch.argmax(rows + g, -1) == k).all()


def chi_square_pvalue(index: torch.Tensor, logits: torch.Tensor) -> float:
    p = torch.softmax(logits.double(), -1)
    counts = torch.bincount(index.reshape(-1), minlength=logits.numel()).double()
    keep = p > 0
    assert counts[~keep].sum() == 0, "a masked category was drawn"
    if keep.sum() == 1:  # one possible category: every draw is it, nothing to test
        return 1.0
    return stats.chisquare(counts[keep].numpy(), (p[keep] * index.numel()).numpy()).pvalue


def test_inverse_cdf_sampler_draws_the_softmax_categorical():
    """Chi-square goodness of fit over 200,000 draws (alpha 1e-3 per case), one-at-a-time and several per row."""
    for logits in (
        torch.tensor([1.5, 0.2, -0.7, 0.0, 2.0, -3.0]),
        torch.tensor([float("-inf"), 0.0, 3.0, float("-inf"), -2.0]),
        torch.randn(64, generator=gen(3)),
        torch.tensor([0.3]),
    ):
        rows = logits.expand(200_000, logits.numel())
        assert chi_square_pvalue(sample_categorical(rows, gen(0)), logits) > 1e-3
        several = sample_categorical(logits.expand(50_000, logits.numel()), gen(1), samples=4)
        assert several.shape == (4, 50_000)
        assert chi_square_pvalue(several, logits) > 1e-3
        for dtype in (torch.float64, torch.float16):
            assert chi_square_pvalue(sample_categorical(rows.to(dtype), gen(2)), logits.to(dtype).float()) > 1e-3


def test_inverse_cdf_extreme_uniforms_never_draw_a_masked_category():
    """The smallest and largest uniforms the sampler makes pick the first and last category of positive probability."""
    smallest, largest = 0.5 * 2.0**-CDF_BITS, (2**CDF_BITS - 0.5) * 2.0**-CDF_BITS
    ninf = float("-inf")
    for row, first, last in (([ninf, 0.0, 1.0, ninf], 1, 2), ([0.0, ninf, ninf], 0, 0), ([ninf, ninf, 5.0], 2, 2),
                             ([-1e4, 0.0, 1e4, ninf], 2, 2), ([0.0] * 7 + [ninf], 0, 6)):
        logits = torch.tensor([row, row], dtype=torch.float64)
        index = sample_categorical(logits, uniforms=torch.tensor([smallest, largest], dtype=torch.float64))
        assert index.tolist() == [first, last], (row, index)


def test_several_draws_per_row_are_the_draws_of_the_repeated_rows():
    """samples=n searches each row's CDF with n uniforms: the same indices as repeating the rows n times."""
    logits = torch.randn(5, 3, 7, generator=gen(4))
    uniforms = torch.rand(4, 5, 3, generator=gen(5), dtype=torch.float64)
    assert torch.equal(sample_categorical(logits, samples=4, uniforms=uniforms),
                       sample_categorical(logits.expand(4, 5, 3, 7), uniforms=uniforms))


def test_narrow_softmax_matches_torch_in_value_and_gradient():
    for categories in (1, 2, 3, 8, 15, 16, 64):
        x = torch.randn(6, 4, categories, dtype=torch.float64, generator=gen(categories), requires_grad=True)
        with torch.no_grad():
            x[0, 0, 0] = float("-inf") if categories > 1 else 0.0  # a masked entry
        upstream = torch.randn(6, 4, categories, dtype=torch.float64, generator=gen(99))
        for ours, theirs in ((softmax, torch.softmax), (log_softmax, torch.log_softmax)):
            mine, = torch.autograd.grad((ours(x).masked_fill(torch.isinf(x), 0) * upstream).sum(), x)
            reference, = torch.autograd.grad((theirs(x, -1).masked_fill(torch.isinf(x), 0) * upstream).sum(), x)
            torch.testing.assert_close(ours(x), theirs(x, -1))
            torch.testing.assert_close(mine, reference)
