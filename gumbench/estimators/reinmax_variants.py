"""ReinMax-Rao and ReinMax-CV: a Rao-Blackwellised and a control-variate ReinMax (issue 26 names them
after 2026 work whose equations gumbench could not consult; these are the natural constructions, stated
exactly here and in docs/estimators.md, and may differ from the papers').

Both start from ReinMax (Liu et al. 2023): forward D ~ Cat(pi), pi = softmax(logits), backward

    R(D) u = 2 J(pi_half) u - (1/2) J(pi) u,    pi_half = (s + D) / 2,    J(p) = diag(p) - p p^T,

with u the upstream gradient at D and s = softmax(logits / tau) in ReinMax.

ReinMax-Rao. ReinMax is a function of D alone, so there is nothing to condition on; the Gumbel form of it
has noise to average out. Take D = argmax(logits + g) with g Gumbel, and the half step with the
perturbed relaxation s_g = softmax((logits + g) / tau) (the st-gumbel forward, in place of softmax(logits / tau));
Rao-Blackwellise it over g given D, with M conditional draws g_1..g_M (the exact race sampler of
Gumbel-Rao):

    grad = (1/M) sum_m 2 J((s_m + D) / 2) u  -  (1/2) J(pi) u,     s_m = softmax((logits + g_m) / tau).

Its mean is that of the M = 1 estimator ("Gumbel-ReinMax"), its variance lower (law of total variance);
as M grows it tends to E[2 J((s_g + D)/2) | D] u - J(pi) u / 2, a deterministic function of D. Any tau > 0.

ReinMax-CV. S >= 2 samples D_1..D_S per row, each with its ReinMax estimate R_s = R(D_s) u_s and the score
psi_s = grad log p(D_s) = D_s - pi (per group), which has mean 0. The control variate is REINFORCE-style,
w_s psi_s with one coefficient per row, the regression coefficient of R on psi fitted on the other samples
(leave-one-out, so w_s is independent of D_s and the term has mean exactly 0):

    grad = (1/S) sum_s (R_s - w_s psi_s),   w_s = sum_{t != s} <R_t, psi_t> / sum_{t != s} ||psi_t||^2   (0 where 0/0),

<.,.> and ||.|| over the row's G x V coordinates. It keeps ReinMax's mean (so its bias, exactly: the control
variate has mean zero) and removes the part of ReinMax's variance along the score. A coefficient per coordinate
fitted from S - 1 = 3 samples was too noisy (on the polynomial toy it doubled ReinMax's variance); pooled over the
row it lowers it on the quadratic and polynomial toys and costs a little on the linear one (tests and docs).
S loss evaluations per estimate.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.estimators.explicit import estimate_surrogate, jacobian_product, loss_and_upstream
from gumbench.estimators.reinmax import softmax_jacobian_surrogate
from gumbench.kernels.reference import compute_dtype, conditional_gumbel, sample_categorical, softmax
from gumbench.plugin import TEMPERATURE, Range


def averaged_jacobian_surrogate(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """A linear function of ``logits`` (..., V) whose Jacobian is the mean over m of J(probs[m]), probs (M, ..., V)
    held constant: (1/M) sum_m (p_m x - p_m (p_m . x)). Masked (-inf) logits enter as 0."""
    x = logits.masked_fill(torch.isneginf(logits), 0.0)
    p = probs.detach()
    return (p * x - p * (p * x).sum(dim=-1, keepdim=True)).mean(0)


@register
class ReinMaxRao(CategoricalEstimator):
    name = "reinmax-rao"
    family = "relaxation"
    description = ("ReinMax-Rao: ReinMax's half step with softmax((logits + g)/tau), averaged over M draws of g given "
                   "the sample (Gumbel-Rao's conditioning), minus J(pi)/2.")
    defaults = {"tau": 1.0, "samples": 10}
    ranges = {"tau": TEMPERATURE, "samples": Range(1, 1000, meaning="M, the conditional Gumbel draws")}

    def estimate(self, logits, loss_fn, generator):
        indices = sample_categorical(logits, generator)
        work = logits.to(compute_dtype(logits.dtype))
        hard = one_hot(indices, logits.shape[-1], work.dtype)
        with torch.no_grad():
            pi = softmax(work)
            noise = conditional_gumbel(work, indices, self.params["samples"], generator=generator)  # (M, ..., G, V)
            half = (softmax((work + noise) / self.params["tau"]) + hard) / 2
        shift = 2 * averaged_jacobian_surrogate(work, half) - 0.5 * softmax_jacobian_surrogate(work, pi)
        value = (hard + (shift - shift.detach())).to(logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})


def leave_one_out_coefficient(estimates: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Per sample s and row: sum_{t != s} <R_t, psi_t> / sum_{t != s} ||psi_t||^2 over dim 0 (inner products over the
    last two dimensions, G x V), shape (S, ..., 1, 1); 0 where the denominator is 0 (no score moved)."""
    products = (estimates * scores).sum(dim=(-2, -1), keepdim=True)
    squares = (scores * scores).sum(dim=(-2, -1), keepdim=True)
    numerator = products.sum(0, keepdim=True) - products
    denominator = squares.sum(0, keepdim=True) - squares
    positive = denominator > 0
    return torch.where(positive, numerator / torch.where(positive, denominator, 1.0), 0.0)


@register
class ReinMaxCV(CategoricalEstimator):
    name = "reinmax-cv"
    family = "relaxation"
    description = ("ReinMax-CV: ReinMax over S samples minus a score-function control variate w (D - pi), w fitted "
                   "leave-one-out per row; ReinMax's mean, S loss evaluations.")
    defaults = {"tau": 1.0, "samples": 4}
    ranges = {"tau": TEMPERATURE, "samples": Range(2, 1000, meaning="S, the samples per row")}

    def validate(self) -> None:
        tau = self.params["tau"]
        if tau < 1:
            raise GumbenchError(f"{self.name}: tau must be >= 1 (ReinMax's second-order correction needs it; "
                                f"Liu et al. 2023), got {tau:g}")

    @property
    def loss_evaluations(self) -> int:
        return self.params["samples"]

    def estimate(self, logits, loss_fn, generator):
        n, categories = self.params["samples"], logits.shape[-1]
        indices = sample_categorical(logits, generator, samples=n)  # (S, ..., G)
        work = logits.to(compute_dtype(logits.dtype))
        z, f, u = loss_and_upstream(loss_fn, indices, categories, logits.dtype, self.spec)
        with torch.no_grad():
            hard, u = z.to(work.dtype), u.to(work.dtype)
            pi = softmax(work.detach())
            half = (softmax(work.detach() / self.params["tau"]) + hard) / 2
            reinmax = 2 * jacobian_product(half, u) - 0.5 * jacobian_product(pi.expand_as(u), u)
            scores = hard - pi
            estimate = (reinmax - leave_one_out_coefficient(reinmax, scores) * scores).mean(0)
        surrogate = f.mean(0) + estimate_surrogate(work, estimate).to(f.dtype)
        return EstimatorOutput(surrogate=surrogate, value=z, indices=indices, loss=f.mean(0), aux={})
