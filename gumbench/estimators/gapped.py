"""Gapped straight-through, GST (Fan, Chi, Rudnicky and Ramadge 2022, "Training Discrete Deep
Generative Models via Gapped Straight-Through Estimator", ICML).

ST-Gumbel's backward uses softmax((logits + g)/tau) with random g; GST replaces g by a
deterministic perturbation m(logits, D) of the sampled category D that keeps the two properties
the paper finds essential: the perturbed logits' argmax is D (consistency) and D leads the
others by at least a gap kappa. With M = max_j logits_j:

    perturbed_D = M                         (D is raised to the top logit)
    perturbed_i = min(logits_i, M - kappa)  (i != D: whatever sits within kappa of M is lowered)

m is a constant of the backward, so the backward is the Jacobian of softmax(perturbed / tau).
Variants:
    1.0  kappa = 1 (GST-1.0)
    p    kappa = -log(1 - pi_D) / pi_D (GST-p), pi = softmax(logits). This is the expected gap
         E[x_D - x_other | D] of the Gumbel-perturbed logits x of a binary variable:
         (1/p) int_0^inf sigmoid(a - t) dt = log(1 + e^a) / p with p = sigmoid(a). It tends to 1
         as pi_D -> 0 and grows without bound as pi_D -> 1.

Registry name ``gst[tau,variant=1.0|p]`` (one name, the variant a parameter). The estimate is a
deterministic function of D, so its mean and variance can be enumerated exactly.
"""

from __future__ import annotations

import torch

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import compute_dtype, log_softmax, sample_categorical, softmax
from gumbench.plugin import TEMPERATURE


def probability_gap(log_probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """GST-p's gap -log(1 - p)/p, p = the probability of ``index``; shape (..., 1), finite.

    log(1 - p) is log1p(-p) for p < 1/2 and the log-sum-exp of the other categories' log
    probabilities above (no cancellation near p = 1); p = 0 gives the limit 1. If every other
    category is masked the gap is irrelevant (they stay at -inf) and is set to 1.
    """
    at = index.unsqueeze(-1)
    log_p = log_probs.gather(-1, at)
    p = log_p.exp()
    log_rest = torch.logsumexp(log_probs.scatter(-1, at, float("-inf")), dim=-1, keepdim=True)
    log_one_minus_p = torch.where(p < 0.5, torch.log1p(-p.clamp_max(0.5)), log_rest)
    gap = -log_one_minus_p / p.clamp_min(torch.finfo(p.dtype).tiny)
    return torch.where((p > 0) & torch.isfinite(gap), gap, torch.ones_like(gap))


def gapped_logits(logits: torch.Tensor, index: torch.Tensor, variant: str = "1.0") -> torch.Tensor:
    """The perturbed logits logits + m(logits, index) of GST; m is held constant (no gradient)."""
    with torch.no_grad():
        theta = logits.detach()
        top = theta.max(dim=-1, keepdim=True).values
        at = index.unsqueeze(-1)
        gap = probability_gap(log_softmax(theta), index) if variant == "p" else 1.0
        lower = -(theta - top + gap).clamp_min(0.0)  # -inf (masked) entries: clamp gives 0, they stay -inf
        shift = lower.scatter(-1, at, top - theta.gather(-1, at))
    return logits + shift


@register
class GappedStraightThrough(CategoricalEstimator):
    name = "gst"
    family = "relaxation"
    description = ("Gapped straight-through (Fan 2022): sample D forward, softmax((logits + m)/tau) Jacobian backward, "
                   "m deterministic with a gap (1.0 or p).")
    defaults = {"tau": 1.0, "variant": "1.0"}
    choices = {"variant": ("1.0", "p")}
    ranges = {"tau": TEMPERATURE}
    variants = ({"variant": "1.0"}, {"variant": "p"})

    def __init__(self, **params):
        # 'gst[variant=1.0]' parses the value as the number 1.0; name it as the paper does, '1.0'.
        variant = params.get("variant")
        if isinstance(variant, (int, float)) and not isinstance(variant, bool):
            params["variant"] = f"{float(variant):.1f}"
        super().__init__(**params)

    def estimate(self, logits, loss_fn, generator):
        indices = sample_categorical(logits, generator)
        work = logits.to(compute_dtype(logits.dtype))
        soft = softmax(gapped_logits(work, indices, self.params["variant"]) / self.params["tau"])
        hard = one_hot(indices, logits.shape[-1], soft.dtype)
        value = (hard + soft - soft.detach()).to(logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
