"""ReinMax (Liu, Zhang, Gao, Chen and Han 2023, "Bridging Discrete and Backpropagation:
Straight-Through and Beyond", NeurIPS): a second-order (Heun's method) straight-through.

Forward: D ~ Cat(pi), pi = softmax(logits). Backward, with u the upstream gradient at D,

    grad = 2 J(pi_half) u - (1/2) J(pi) u,   pi_half = (softmax(logits / tau) + D) / 2,

and J(p) = diag(p) - p p^T, the softmax Jacobian at p (symmetric). Straight-through is the
first-order (Euler) rule J(pi) u; ReinMax replaces f(I_i) - f(I_j) by the trapezoid rule
(1/2)(grad f(I_i) + grad f(I_j)).(I_i - I_j), which is exact for quadratic f, so at tau = 1 the
estimator is unbiased for every loss quadratic in the one-hot sample (per group, as groups are
independent). The paper requires tau >= 1; smaller values raise an error.

The estimate is a deterministic function of D: its mean and variance can be enumerated exactly.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import compute_dtype, sample_categorical, softmax
from gumbench.plugin import TEMPERATURE


def softmax_jacobian_surrogate(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """A function of ``logits`` whose Jacobian is J(probs) = diag(p) - p p^T (probs held constant).

    It is linear, h(x) = p * x - p (p . x), so ``h - h.detach()`` is exactly 0 in the forward and
    carries J(p) u backward. Masked (-inf) logits enter as 0: their probability, hence their
    row and column of J, is 0 anyway.
    """
    x = logits.masked_fill(torch.isneginf(logits), 0.0)
    p = probs.detach()
    return p * x - p * (p * x).sum(dim=-1, keepdim=True)


@register
class ReinMax(CategoricalEstimator):
    name = "reinmax"
    family = "relaxation"
    description = ("ReinMax (Liu 2023): sample forward, 2 J(pi_half) - J(pi)/2 backward, "
                   "pi_half = (softmax(logits/tau) + D)/2; tau >= 1.")
    defaults = {"tau": 1.0}
    ranges = {"tau": TEMPERATURE}

    def validate(self) -> None:
        tau = self.params["tau"]
        if tau < 1:
            raise GumbenchError(
                f"{self.name}: tau must be >= 1 (ReinMax's second-order correction needs it; Liu et al. 2023), "
                f"got {tau:g}"
            )

    def estimate(self, logits, loss_fn, generator):
        indices = sample_categorical(logits, generator)
        work = logits.to(compute_dtype(logits.dtype))
        hard = one_hot(indices, logits.shape[-1], work.dtype)
        with torch.no_grad():
            pi = softmax(work)
            pi_half = (softmax(work / self.params["tau"]) + hard) / 2
        shift = 2 * softmax_jacobian_surrogate(work, pi_half) - 0.5 * softmax_jacobian_surrogate(work, pi)
        value = (hard + (shift - shift.detach())).to(logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
