"""Utilization metrics against values computed by hand: categorical and VQ codebooks, implicit
codebooks (FSQ / LFQ / BSQ: effective bits, per-dimension usage) and residual stages (per stage, joint)."""

import math

import pytest
import torch

from gumbench.benchmarks.utilization import (
    StageUsageTracker,
    UsageTracker,
    code_churn,
    code_perplexity,
    diversity_loss,
    implicit_usage,
    prob_perplexity,
    stage_usage,
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


def test_diversity_loss_uses_the_exact_entropy_of_prob_perplexity():
    G, V = 2, 320
    assert abs(float(diversity_loss(torch.zeros(10, G, V)))) < 1e-12  # exactly 0 at uniform use, up to rounding
    logits = torch.randn(50, G, V, generator=torch.Generator().manual_seed(0)) * 3
    exact = (G * V - float(prob_perplexity(logits).sum())) / (G * V)
    # float32 result of a float64 computation: one float32 rounding of a value below 1
    assert float(diversity_loss(logits)) == pytest.approx(exact, abs=torch.finfo(torch.float32).eps)


@pytest.mark.parametrize("codes", [320, 8192])
def test_the_log_guard_of_fairseq_and_hugging_face_at_uniform_use(codes):
    # log(p + 1e-7) at p = 1/V: perplexity V / (1 + V 1e-7) per group, so the guarded loss is
    # V 1e-7 / (1 + V 1e-7) where the exact one is 0 (the figures utilization.diversity_loss quotes)
    p = torch.full((2, codes), 1.0 / codes, dtype=torch.float64)
    guarded = 1 - torch.exp(-(p * torch.log(p + 1e-7)).sum(-1)).sum() / (2 * codes)
    assert float(guarded) == pytest.approx(codes * 1e-7 / (1 + codes * 1e-7), rel=1e-9)
    assert f"{float(guarded):.1e}" == {320: "3.2e-05", 8192: "8.2e-04"}[codes]


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
    torch.testing.assert_close(
        usage_counts(torch.tensor([[0, 1], [0, 2]]), 3), torch.tensor([[2.0, 0, 0], [0, 1, 1]], dtype=torch.float64)
    )
    with pytest.raises(GumbenchError, match=r"\[0, 3\)"):
        usage_counts(torch.tensor([[3]]), 3)
    with pytest.raises(GumbenchError):
        UsageTracker(1, 2, window=0)


def digits_of(indices, levels):
    """Mixed-radix digits, dimension 0 least significant (the tests' own convention)."""
    out, rest = [], indices
    for level in levels:
        out.append(rest % level)
        rest = rest // level
    return torch.stack(out, -1)


def test_implicit_usage_of_every_code_once_is_full():
    levels = (8, 5, 5, 5)
    codes = torch.arange(1000).unsqueeze(-1)  # every code once, one group
    u = implicit_usage(codes, digits_of(codes, levels), levels)
    torch.testing.assert_close(u.code_perplexity, torch.tensor([1000.0], dtype=torch.float64))
    assert float(u.used_fraction) == 1.0
    assert u.code_bits == pytest.approx(math.log2(1000))
    torch.testing.assert_close(u.effective_bits, torch.tensor([math.log2(1000)], dtype=torch.float64))
    torch.testing.assert_close(u.dim_perplexity, torch.tensor([[8.0, 5, 5, 5]], dtype=torch.float64))
    row = u.as_row()
    assert row["dim_bits"] == pytest.approx(row["code_bits"]) and row["dim_max_bits_d0"] == 3.0
    assert row["dim_bits_d1"] == pytest.approx(math.log2(5)) and "effective_bits_g0" not in row


def test_implicit_usage_by_hand_with_correlated_dimensions():
    """LFQ-like (2,)*3, two groups: group 0 uses codes 0 and 7 (all dims flip together), group 1 code 5 always."""
    levels = (2, 2, 2)
    indices = torch.tensor([[0, 5], [7, 5], [0, 5], [7, 5]])
    u = implicit_usage(indices, digits_of(indices, levels), levels)
    torch.testing.assert_close(u.code_perplexity, torch.tensor([2.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(u.used_fraction, torch.tensor([2 / 8, 1 / 8], dtype=torch.float64))
    torch.testing.assert_close(u.effective_bits, torch.tensor([1.0, 0.0], dtype=torch.float64))
    # each dimension of group 0 is a fair coin (1 bit, perplexity 2) but together they carry 1 bit, not 3
    torch.testing.assert_close(u.dim_bits, torch.tensor([[1.0, 1, 1], [0, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(u.dim_perplexity, torch.tensor([[2.0, 2, 2], [1, 1, 1]], dtype=torch.float64))
    row = u.as_row("eval_")
    assert row["eval_effective_bits"] == pytest.approx(0.5) and row["eval_code_bits"] == pytest.approx(3.0)
    assert row["eval_dim_bits"] == pytest.approx(1.5)  # (3 + 0) / 2 >= effective bits 0.5
    assert row["eval_effective_bits_g0"] == pytest.approx(1.0) and row["eval_effective_bits_g1"] == 0.0
    assert row["eval_dim_perplexity_d2"] == pytest.approx(1.5)


def test_implicit_usage_handles_products_far_beyond_the_batch():
    levels = (2,) * 40  # 2^40 codes: only the codes seen are counted
    indices = torch.tensor([[0], [1], [2**39], [1]])
    u = implicit_usage(indices, digits_of(indices, levels), levels)
    assert float(u.used_fraction) == pytest.approx(3 / 2**40)
    assert float(u.effective_bits) == pytest.approx(1.5)  # usage 1/4, 1/2, 1/4
    assert u.code_bits == 40.0
    empty = implicit_usage(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 2, 3, dtype=torch.long), (2, 3, 4))
    assert empty.used_fraction.tolist() == [0.0, 0.0] and empty.effective_bits.tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "indices, digits, levels, message",
    [
        (torch.tensor([[8]]), torch.tensor([[[0, 0, 0]]]), (2, 2, 2), r"code indices must lie in \[0, 8\)"),
        (torch.tensor([[1]]), torch.tensor([[[1, 2, 0]]]), (2, 2, 2), r"digit 1 must lie in \[0, 2\)"),
        (
            torch.tensor([[1]]),
            torch.tensor([[1, 0]]),
            (2, 2),
            r"digits must have shape indices.shape \+ \(D,\) = \(1, 1, 2\)",
        ),
        (torch.tensor([[1.0]]), torch.tensor([[[1, 0]]]), (2, 2), "indices must be an integer tensor"),
        (torch.tensor([[1]]), torch.tensor([[[1, 0]]]), (2, 0), "levels must be a non-empty sequence of integers >= 1"),
        (torch.tensor([[1]]), torch.tensor([[[1, 0]]]), 4, "levels must be a non-empty sequence"),
    ],
)
def test_implicit_usage_refuses_bad_input(indices, digits, levels, message):
    with pytest.raises(GumbenchError, match=message):
        implicit_usage(indices, digits, levels)


def test_stage_usage_by_hand():
    """Two stages of 4 codes, one group: stage 0 uses 0, 0, 1, 1; stage 1 uses 2, 3, 2, 2."""
    stages = torch.tensor([[0, 2], [0, 3], [1, 2], [1, 2]]).unsqueeze(1)  # (4, G=1, S=2)
    u = stage_usage(stages, 4)
    p1 = torch.tensor([0.75, 0.25], dtype=torch.float64)
    torch.testing.assert_close(
        u.code_perplexity, torch.tensor([[2.0, math.exp(-(p1 * p1.log()).sum())]], dtype=torch.float64)
    )
    torch.testing.assert_close(u.used_fraction, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    # distinct tuples (0,2), (0,3), (1,2) with counts 1, 1, 2: entropy 1.5 bits
    torch.testing.assert_close(u.joint_bits, torch.tensor([1.5], dtype=torch.float64))
    torch.testing.assert_close(u.joint_perplexity, torch.tensor([2**1.5], dtype=torch.float64))
    row = u.as_row(dead_codes=torch.tensor([[2.0, 1.0]]))
    assert row["code_perplexity_s0"] == pytest.approx(2.0) and row["used_fraction_s1"] == 0.5
    assert row["dead_codes_s0"] == 2.0 and row["dead_codes_s1"] == 1.0
    assert row["joint_code_perplexity"] == pytest.approx(2**1.5) and row["joint_max_bits"] == 4.0


def test_stage_usage_joint_perplexity_sums_groups_and_stages_may_differ_in_size():
    g0 = torch.tensor([[0, 0], [1, 1], [2, 2]])  # three distinct tuples
    g1 = torch.tensor([[0, 5], [0, 5], [0, 5]])  # one
    u = stage_usage(torch.stack([g0, g1], 1), (3, 6))
    torch.testing.assert_close(u.joint_perplexity, torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert u.as_row()["joint_code_perplexity"] == pytest.approx(4.0)
    assert u.as_row()["joint_bits"] == pytest.approx(math.log2(3) / 2)
    assert u.joint_max_bits == pytest.approx(math.log2(18))
    torch.testing.assert_close(u.used_fraction, torch.tensor([[1.0, 0.5], [1 / 3, 1 / 6]], dtype=torch.float64))


def test_stage_tracker_counts_dead_codes_per_stage():
    tracker = StageUsageTracker(groups=1, codes=3, stages=2, window=2)
    tracker.update(torch.tensor([[[0, 1]], [[1, 1]]]))
    tracker.update(torch.tensor([[[0, 1]]]))
    torch.testing.assert_close(tracker.dead_codes(), torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    tracker.update(torch.tensor([[[2, 0]]]))  # the first update leaves the window
    torch.testing.assert_close(tracker.dead_codes(), torch.tensor([[1.0, 1.0]], dtype=torch.float64))


@pytest.mark.parametrize("stages, codes, message", [
    (torch.tensor([[[0, 4]]]), 4, r"stage 1 must lie in \[0, 4\)"),
    (torch.tensor([[[0, 1]]]), (4, 4, 4), "codes per stage: 3 values for 2 stages"),
    (torch.tensor([0, 1]), 4, r"stage indices must be an integer tensor of shape \(..., G, S\)"),
    (torch.zeros(3, 1, 0, dtype=torch.long), 4, "sizes >= 1"),
])
def test_stage_usage_refuses_bad_input(stages, codes, message):
    with pytest.raises(GumbenchError, match=message):
        stage_usage(stages, codes)


def test_stage_usage_leaves_dropped_stages_out():
    """Quantizer dropout marks a row's unused stages -1: each stage counts the rows that ran it, the
    joint usage the rows that ran every stage."""
    from gumbench.benchmarks.utilization import stage_usage

    stages = torch.tensor([[[0, 1]], [[1, -1]], [[1, -1]], [[0, 1]]])  # 4 rows, 1 group, 2 stages of 2 codes
    usage = stage_usage(stages, 2)
    assert usage.used_fraction.tolist() == [[1.0, 0.5]]  # stage 1 ran on rows 0 and 3, both code 1
    assert usage.code_perplexity[0, 0].item() == pytest.approx(2.0)  # stage 0: codes 0, 1, 1, 0
    assert usage.code_perplexity[0, 1].item() == pytest.approx(1.0)
    assert usage.joint_perplexity.item() == pytest.approx(1.0)  # complete rows 0 and 3: the same tuple (0, 1)
