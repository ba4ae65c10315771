"""ZGR, the zero-temperature limit of Gumbel-Rao (Shekhovtsov 2023, "Cold Analysis of Rao-Blackwellized
Straight-Through Gumbel-Softmax Gradient Estimator", ICML).

Forward: D = one-hot(x), x ~ Cat(pi), pi = softmax(logits). Backward, with u the upstream gradient at D,

    grad = 1/2 [ J(pi) u  +  (u . (D - pi)) (D - pi) ],        J(p) = diag(p) - p p^T,

the average of straight-through at tau = 1 (first term) and DARN (second term: (D - pi) . u times
grad log pi_x = D - pi; Gregor et al. 2014's estimator in the categorical form the paper gives).
Coordinate by coordinate: grad_i = pi_i (u_i - u_x) / 2 for i != x and grad_x = (u_x - pi . u) / 2.
The paper shows that the Gumbel-Rao estimator E[J_tau(g) | D] u / tau tends to this as tau -> 0 and
that it is unbiased for every loss quadratic in the one-hot sample (for linear losses both halves are).
No temperature: ``zgr`` takes no parameters.

The backward is carried by a linear surrogate of the logits, M x with M = (J(pi) + (D - pi)(D - pi)^T)/2
held constant (symmetric), added as ``h - h.detach()``: exactly 0 forward, M u backward. Masked (-inf)
logits enter as 0; their pi and their entry of D - pi are 0, so their rows and columns of M are 0.
The estimate is a deterministic function of D: its mean and variance can be enumerated exactly.
"""

from __future__ import annotations

import torch

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.estimators.reinmax import softmax_jacobian_surrogate
from gumbench.kernels.reference import compute_dtype, sample_categorical, softmax


def darn_surrogate(logits: torch.Tensor, hard: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """A linear function of ``logits`` with Jacobian (D - p)(D - p)^T (D and p held constant): DARN's
    backward, (u . (D - p)) (D - p). Masked (-inf) logits enter as 0 (their entry of D - p is 0)."""
    x = logits.masked_fill(torch.isneginf(logits), 0.0)
    d = hard - probs.detach()
    return d * (d * x).sum(dim=-1, keepdim=True)


@register
class ZGR(CategoricalEstimator):
    name = "zgr"
    family = "relaxation"
    description = ("ZGR (Shekhovtsov 2023): sample D forward, (J(pi) u + (u.(D - pi))(D - pi))/2 backward: "
                   "the tau -> 0 limit of Gumbel-Rao, (ST + DARN)/2.")

    def estimate(self, logits, loss_fn, generator):
        indices = sample_categorical(logits, generator)
        work = logits.to(compute_dtype(logits.dtype))  # fp16/bf16: in fp32
        hard = one_hot(indices, logits.shape[-1], work.dtype)
        with torch.no_grad():
            pi = softmax(work)
        shift = 0.5 * (softmax_jacobian_surrogate(work, pi) + darn_surrogate(work, hard, pi))
        value = (hard + (shift - shift.detach())).to(logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
