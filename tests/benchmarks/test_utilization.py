"""Utilization metrics against values computed by hand."""

import math

import pytest
import torch

from gumbench.benchmarks.utilization import (
    UsageTracker,
    code_churn,
    code_perplexity,
    diversity_loss,
    prob_perplexity,
    summarize,
    usage_counts,
)
from gumbench.errors import GumbenchError


def test_perplexity_is_V_at_uniform_usage_and_1_at_collapse():
    V, G = 8, 2
    uniform = torch.arange(V * 5).remainder(V).unsqueeze(-1).expand(-1, G)  # every code 5 times, each group
    torch.testing.assert_close(code_perplexity(uniform, V), torch.full((G,), float(V), dtype=torch.float64))
    collapsed = torch.full((40, G), 3)
    torch.testing.assert_close(code_perplexity(collapsed, V), torch.ones(G, dtype=torch.float64))
    s = summarize(collapsed, V)
    assert s.collapsed and s.as_row()["code_perplexity"] == 2.0 and s.as_row()["used_fraction"] == 1 / V


def test_perplexity_of_two_codes_half_half_is_two():
    idx = torch.tensor([[0], [1], [0], [1]])
    assert float(code_perplexity(idx, 4)) == pytest.approx(2.0)
    assert float(summarize(idx, 4).usage_entropy) == pytest.approx(math.log(2))
    assert summarize(idx, 4).collapsed  # perplexity 2 <= threshold 2


def test_diversity_loss_by_hand():
    G, V = 2, 320
    # uniform soft usage: every frame's softmax uniform -> perplexity V per group -> loss 0
    assert float(diversity_loss(torch.zeros(10, G, V))) == pytest.approx(0.0, abs=1e-4)
    # one code per group with all the mass -> perplexity 1 per group -> (GV - G)/GV
    peaked = torch.full((10, G, V), -1e4)
    peaked[..., 7] = 0
    assert float(diversity_loss(peaked)) == pytest.approx((G * V - G) / (G * V), abs=1e-5)
    # the soft perplexity averages the softmax over frames: two frames on different codes -> 2
    two = torch.full((2, 1, 4), -1e4)
    two[0, 0, 0] = two[1, 0, 1] = 0
    assert float(prob_perplexity(two)) == pytest.approx(2.0)


def test_dead_codes_over_a_window_and_churn():
    tracker = UsageTracker(groups=1, codes=4, window=2)
    tracker.update(torch.tensor([[0], [1]]))
    tracker.update(torch.tensor([[2], [2]]))
    assert float(tracker.dead_codes().sum()) == 1  # code 3
    tracker.update(torch.tensor([[2], [2]]))  # code 0 and 1 fall out of the window
    assert float(tracker.dead_codes().sum()) == 3
    assert code_churn(None, torch.tensor([1])) is None
    assert code_churn(torch.tensor([[0], [1], [2], [3]]), torch.tensor([[0], [1], [0], [0]])) == 0.5


def test_counts_and_errors():
    torch.testing.assert_close(usage_counts(torch.tensor([[0, 1], [0, 2]]), 3), torch.tensor([[2.0, 0, 0], [0, 1, 1]], dtype=torch.float64))
    with pytest.raises(GumbenchError, match=r"\[0, 3\)"):
        usage_counts(torch.tensor([[3]]), 3)
    with pytest.raises(GumbenchError):
        UsageTracker(1, 2, window=0)
