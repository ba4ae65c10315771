"""The kernel samples the right distribution: argmax frequencies are the softmax's.

The looped path needs no test of its own here: it returns the reference's argmax for the
same uniforms (test_gumbel_softmax), and these uniforms are tested below.
"""

import math

import pytest
import torch
from scipy import stats

from gumbench.kernels import gumbel_argmax, gumbel_softmax, gumbel_uniforms, launch

P_MIN = 1e-3  # fixed seeds; a correct sampler fails this once in a thousand seeds


def chi_square_p(index: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(index.flatten(), minlength=len(probs)).double()
    keep = probs > 0
    assert counts[~keep].sum() == 0, "a zero-probability category was drawn"
    expected = probs[keep].double() / probs[keep].double().sum() * counts.sum()
    return stats.chisquare(counts[keep].numpy(), expected.numpy()).pvalue


def test_argmax_frequencies_match_softmax():
    probs = torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4, 0.0])  # the last is masked with -inf
    logits = probs.log()
    n_rows = 8 * launch.launch_config(4096, 6).rows_per_program  # 8 programs of 512 rows: 4096 draws
    x = logits.expand(n_rows, -1)
    assert chi_square_p(gumbel_argmax(x, 11, backend="triton"), probs) > P_MIN
    # the one-hot of the hard forward is the same sample; tau does not change it
    y = gumbel_softmax(x, tau=0.1, hard=True, seed=12, backend="triton")
    assert torch.equal(y.sum(-1), torch.ones(n_rows))
    assert chi_square_p(y.argmax(-1), probs) > P_MIN


def test_uniforms_are_uniform_and_independent_of_position():
    u = gumbel_uniforms((64, 64), 5).flatten()
    assert stats.kstest(u.numpy(), "uniform").pvalue > P_MIN
    # neighbouring columns share a Philox call (4 outputs): they must not be correlated
    pairs = gumbel_uniforms((64, 64), 6).view(-1, 2)
    assert abs(stats.pearsonr(pairs[:, 0].numpy(), pairs[:, 1].numpy()).statistic) < 4 / math.sqrt(len(pairs))


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_hard_sample_is_the_argmax_of_the_soft_one(tau):
    probs = torch.tensor([0.2, 0.3, 0.5])
    x = probs.log().expand(2048, -1)
    y = gumbel_softmax(x, tau=tau, seed=21, backend="triton")
    assert torch.allclose(y.sum(-1), torch.ones(2048), atol=1e-5)
    hard = gumbel_softmax(x, tau=tau, hard=True, seed=21, backend="triton")
    assert torch.equal(hard.argmax(-1), y.argmax(-1))  # the same noise under both
