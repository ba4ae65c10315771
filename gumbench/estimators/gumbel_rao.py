"""Gumbel-Rao: the straight-through Gumbel-softmax estimator, Rao-Blackwellized over its noise
(Paulus, Maddison and Krause 2021, "Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator", ICLR).

Forward: one hard sample D = one-hot(k), k ~ Cat(softmax(logits)). Backward: the Jacobian of
softmax((logits + g)/tau) averaged over M Gumbel draws g_1..g_M from the law of g given
argmax(logits + g) = k, applied to the upstream gradient at D. The average estimates
E[J(g) | D], so the mean is that of ``st-gumbel`` and the variance is lower (law of total
variance); with M = 1 the pair (k, g_1) has the law of (argmax(logits + g), g), so the
estimator equals ``st-gumbel`` in distribution. No gradient flows through the conditional
noise itself (it is a constant of the backward, as in st-gumbel).

The conditional sampler is exact and built from exponentials (the "exponential race"): with
lambda_i = exp(logits_i), Z = sum lambda, pi = lambda / Z and E_i ~ Exp(1) iid, the smallest of
the times E_i / lambda_i is Exp(Z) and independent of which index wins, and the others exceed it
by independent Exp(lambda_i) amounts (memorylessness). In log space, given the winner k,

    logits_k + g_k = log Z - log E_k                       i.e. g_k = -log E_k - log pi_k
    logits_i + g_i = logits_i - log(E_i + E_k pi_i)        i.e. g_i = -log(E_i + E_k pi_i)

Only log pi and pi enter, never exp(logits): finite for logits of +-1e4, and a masked entry
(pi_i = 0) gets g_i = -log E_i, a finite value that the -inf logit keeps out of every softmax.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError, check_positive
from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.estimators.straight_through import sample_categorical
from gumbench.kernels.reference import compute_dtype, uniform_open


def conditional_gumbel(logits: torch.Tensor, index: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel noise g of shape (samples, *logits.shape) drawn given argmax(logits + g) == index.

    ``logits`` (..., V), ``index`` (...) with logits[index] finite. Computed in fp32 (fp64 for fp64
    logits) without gradient. With ``index`` itself drawn from Cat(softmax(logits)), the returned
    noise is iid Gumbel(0, 1), whatever the logits.
    """
    cdtype = compute_dtype(logits.dtype)
    with torch.no_grad():
        log_p = torch.log_softmax(logits.detach().to(cdtype), dim=-1)  # -inf at masked entries
        exponentials = -torch.log(uniform_open((samples, *logits.shape), generator=generator, device=logits.device, dtype=cdtype))
        at = index.unsqueeze(0).unsqueeze(-1).expand(samples, *index.shape, 1)
        top_exponential = exponentials.gather(-1, at)
        others = -torch.log(exponentials + top_exponential * log_p.exp())
        top = -torch.log(top_exponential) - log_p.gather(-1, index.unsqueeze(-1)).unsqueeze(0)
        return others.scatter(-1, at, top)


@register
class GumbelRao(CategoricalEstimator):
    name = "gumbel-rao"
    family = "relaxation"
    description = "Gumbel-Rao (Paulus 2021): one hard sample forward, softmax((logits + g)/tau) Jacobian averaged over M draws of g given the sample."
    parameters = {"tau": 1.0, "samples": 10}

    def validate(self) -> None:
        check_positive(f"{self.name}: tau", self.params["tau"])
        if self.params["samples"] < 1:
            raise GumbenchError(f"{self.name}: samples (M, the conditional Gumbel draws) must be >= 1, got {self.params['samples']}")

    def estimate(self, logits, loss_fn, generator):
        if not self.training:  # as st-gumbel: the noiseless argmax, no gradient
            indices = logits.detach().argmax(dim=-1)
            value = one_hot(indices, logits.shape[-1], logits.dtype)
            loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
            return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
        indices = sample_categorical(logits, generator)
        noise = conditional_gumbel(logits, indices, self.params["samples"], generator=generator)
        work = logits.to(noise.dtype)
        soft = torch.softmax((work + noise) / self.params["tau"], dim=-1).mean(dim=0)
        hard = one_hot(indices, logits.shape[-1], soft.dtype)
        value = (hard + soft - soft.detach()).to(logits.dtype)
        loss = call_loss(loss_fn, value, logits.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
