"""Plain straight-through: exact for linear losses at tau = 1, biased at other temperatures."""

import pytest
import torch

from gumbench.benchmarks import gradient_statistics, make_task


def test_straight_through_tau1_is_exact_for_linear_loss():
    toy = make_task("categorical[loss=linear,groups=3,categories=5]")
    s = gradient_statistics("straight-through[tau=1]", toy.logits, toy.loss, 1000, seed=0)
    # zero up to float32 rounding of the gradients: (1e-6 * ||grad||)^2
    assert s.total_variance.value < (1e-6 * s.exact_norm) ** 2
    assert s.coordinate_variance.max() < (1e-6 * s.exact_norm) ** 2
    torch.testing.assert_close(s.mean_gradient, s.exact_gradient, rtol=1e-5, atol=1e-6)
    assert s.cosine.value == pytest.approx(1.0, abs=1e-6)
    # at another temperature it is biased
    biased = gradient_statistics("straight-through[tau=0.5]", toy.logits, toy.loss, 1000, seed=0)
    assert biased.bias.low > 0
