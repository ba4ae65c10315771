"""DisARM (Dong, Mnih and Tucker 2020, "DisARM: An Antithetic Gradient Estimator for Binary
Latent Variables", NeurIPS) for independent binary variables.

Each group of logits (l0, l1) is a Bernoulli variable x = 1 with probability sigmoid(a),
a = l1 - l0 (so groups must have exactly V = 2 categories). One uniform u per variable gives
the antithetic pair b = 1[u < sigmoid(a)], b~ = 1[1 - u < sigmoid(a)]; both are samples of the
variable, and the loss is evaluated on both (one call, shape (2, ..., G, 2)). Per variable i,

    grad_a_i = 1/2 (f(b) - f(b~)) (-1)^{b~_i} 1[b_i != b~_i] sigmoid(|a_i|),

with f taken at the whole vectors b, b~; the gradient w.r.t. (l0, l1) is (-grad_a, +grad_a).
Unbiased; a variable whose pair agrees contributes 0. At a = 0 the pair is always (b, 1 - b),
so a single variable's estimate is the constant (f(1) - f(0)) / 4, the exact gradient: zero
variance.

The surrogate is the mean loss of the pair (any parameters inside ``loss_fn`` get their
pathwise gradient from both members) plus the score term, which is 0 in value.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import compute_dtype, uniform_open


def antithetic_pair(
    logit_difference: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, b~) as booleans, from one safe uniform per entry of a = l1 - l0 (may be +-inf)."""
    a = logit_difference.detach()
    u = uniform_open(a.shape, generator=generator, device=a.device, dtype=compute_dtype(a.dtype))
    p = torch.sigmoid(a.to(u.dtype))
    return u < p, (1 - u) < p  # 1 - u is exact for the safe uniforms (k + 0.5) / 2^b


@register
class DisARM(CategoricalEstimator):
    name = "disarm"
    family = "score-function"
    description = ("DisARM (Dong 2020) for binary variables (V = 2, a = l1 - l0): antithetic pair from one uniform, "
                   "1/2 (f(b) - f(b~)) (-1)^b~ 1[b != b~] sigmoid(|a|).")
    required_categories = 2  # logits must be (..., G, 2)
    zero_estimate_possible = True  # the estimate is exactly 0 when every pair agrees
    loss_evaluations = 2  # the antithetic pair
    variants = ()  # not in the default gradstats table: its toy has 8 categories per group

    def estimate(self, logits, loss_fn, generator):
        if logits.shape[-1] != 2:
            raise GumbenchError(
                f"{self.name} is for binary variables: logits must have shape (..., G, 2) with the Bernoulli logit "
                f"l1 - l0, got {logits.shape[-1]} categories; use a binary task (bernoulli, polynomial)"
            )
        work = logits.to(compute_dtype(logits.dtype))  # fp16: l1 - l0 can overflow, so in fp32
        finite = work.masked_fill(torch.isneginf(work), 0.0)  # keeps -inf out of the score term
        a = work[..., 1].detach() - work[..., 0].detach()
        b, b_anti = antithetic_pair(a, generator)
        indices = torch.stack((b, b_anti)).long()  # (2, ..., G)
        value = one_hot(indices, 2, logits.dtype)
        f = call_loss(loss_fn, value, (2, *logits.shape[:-2]), self.spec)
        with torch.no_grad():
            sign = (b.to(f.dtype) - b_anti.to(f.dtype))  # (-1)^{b~} 1[b != b~]
            coefficient = 0.5 * (f[0] - f[1]).unsqueeze(-1) * sign * torch.sigmoid(a.abs().to(f.dtype))
        score = finite[..., 1] - finite[..., 0]
        surrogate = f.mean(0) + (coefficient * (score - score.detach())).sum(-1).to(f.dtype)
        return EstimatorOutput(surrogate=surrogate, value=value, indices=indices, loss=f.mean(0), aux={})
