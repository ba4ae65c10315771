"""IndeCateR, the Rao-Blackwellized score function for independent categorical groups (De Smet, Sansone
and Zuidberg Dos Martires 2023, "Differentiable Sampling of Categorical Distributions Using the
CatLog-Derivative Trick", NeurIPS).

For z = (z_1..z_G) with independent groups z_g ~ Cat(p_g), p_g = softmax(logits_g), the CatLog-derivative
trick sums each group's score over its V categories instead of sampling it:

    grad_{logits} E[f(z)] = sum_g E_{z_{-g}} [ sum_k grad p_g(k) f(z_{-g}, z_g = k) ],

estimated with S draws x^(1..S) ~ p as

    (1/S) sum_s sum_g sum_k grad p_g(k) f(x^(s)_{-g}, x_g = k)  ==  (1/S) sum_s sum_g J(p_g) f^(s)_g,

f^(s)_g the vector of the V losses with group g of draw s set to each category in turn
(grad_{logits_g} p_g(k) = p_g(k)(e_k - p_g), so the group's estimate is J(p_g) f_g, J(p) = diag(p) - p p^T).
Unbiased for any loss, with the variance of the plain score function reduced by conditioning each
group on the others. Each draw costs G x V loss evaluations (the draw itself is among them: group 0 set
to its own category): ``loss_fn`` is called on all substitutions of all draws with one extra leading
dimension, shape (G V S, ..., G, V), as the loss_fn contract allows (split into several calls where one
would build more than ``SUBSTITUTION_ELEMENTS`` one-hot elements).

Surrogate (one entry per row):

    (1/(S G)) sum_{s,g,k} sg[p_g(k)] f^(s)_{gk}  +  (1/S) sum_{s,g,k} (p_g(k) - sg[p_g(k)]) sg[f^(s)_{gk}]

(sg = detach). Its gradient at the logits is the IndeCateR estimate (the first term gives the logits
none: the one-hots are constants). Parameters phi inside ``loss_fn`` (a decoder, a codebook the one-hot
selects rows of) get (1/(S G)) sum_{s,g,k} p_g(k) grad_phi f^(s)_{gk}: for each g, sum_k p_g(k) grad_phi
f(x_{-g}, k) is E[grad_phi f(z) | z_{-g} = x_{-g}], so this is an unbiased, Rao-Blackwellized estimate
of grad_phi E[f] (every code row gets its probability-weighted gradient, not only the drawn one). Its
value is the matching Rao-Blackwellized estimate of E[f]; ``loss`` reports f at the draws themselves.
With no groups (G = 0) the surrogate is f at the draws. Masked (-inf) categories have p_g(k) = 0: the
substituted configurations are evaluated but weigh nothing.

With S = 1 the estimate is a deterministic function of the draw x, so its mean and variance can be
enumerated exactly.
"""

from __future__ import annotations

import torch

from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import compute_dtype, sample_categorical, softmax
from gumbench.plugin import MAX_ELEMENTS, Range

# One-hot elements built for one call of loss_fn; more substitutions are split over several calls.
SUBSTITUTION_ELEMENTS = MAX_ELEMENTS // 8


def substitutions(sample: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Substitutions start..stop-1 of the one-hot draws ``sample`` (S, ..., G, V), substitution
    j = g V + k being the draws with group g set to category k: shape (stop - start, S, ..., G, V)."""
    groups, categories = sample.shape[-2:]
    j = torch.arange(start, stop, device=sample.device)
    lead = [1] * (sample.dim() - 2)  # S and the batch dimensions
    group = (j.div(categories, rounding_mode="floor")[:, None] == torch.arange(groups, device=sample.device))
    replaced = group.reshape(len(j), *lead, groups, 1)
    row = one_hot(j % categories, categories, sample.dtype).reshape(len(j), *lead, 1, categories)
    return torch.where(replaced, row, sample.unsqueeze(0))


@register
class IndeCateR(CategoricalEstimator):
    name = "indecater"
    family = "score-function"
    description = ("IndeCateR / CatLog (De Smet 2023): sum_g sum_k grad p_g(k) f(x_{-g}, x_g = k) over S draws x ~ p; "
                   "unbiased, G x V loss evaluations per draw.")
    defaults = {"samples": 1}
    ranges = {"samples": Range(1, 1000, meaning="S, the draws per row")}

    @property
    def loss_evaluations(self) -> int:
        return self.params["samples"]  # per group and category: see evaluations_per_estimate

    def evaluations_per_estimate(self, groups: int, categories: int) -> int:
        return groups * categories * self.params["samples"]  # every substitution of every draw

    def estimate(self, logits, loss_fn, generator):
        n = self.params["samples"]
        batch, (groups, categories) = logits.shape[:-2], logits.shape[-2:]
        indices = sample_categorical(logits, generator, samples=n)  # (n, ..., G)
        z = one_hot(indices, categories, logits.dtype)
        probs = softmax(logits.to(compute_dtype(logits.dtype)))  # (..., G, V), with gradient
        if groups == 0:  # nothing to substitute: the loss at the draws (and a zero gradient)
            f = call_loss(loss_fn, z, (n, *batch), self.spec)
            surrogate = f.mean(0) + 0 * probs.sum((-2, -1)).to(f.dtype)
        else:
            f_sub = self.substituted_losses(z, loss_fn)  # (n, ..., G, V)
            f = f_sub[..., 0, :].gather(-1, indices[..., :1]).squeeze(-1)  # group 0 set to its own draw: the draw
            weights = probs.detach().to(f_sub.dtype)
            pathwise = (weights * f_sub).sum(
                (-2, -1)
            ) / groups  # Rao-Blackwellized f: the gradient of loss_fn's parameters
            score = ((probs - probs.detach()) * f_sub.detach().to(probs.dtype)).sum((-2, -1)).to(f_sub.dtype)
            surrogate = (pathwise + score).mean(0)
        if n == 1:
            z, indices = z[0], indices[0]
        return EstimatorOutput(surrogate=surrogate, value=z, indices=indices, loss=f.mean(0), aux={})

    def substituted_losses(self, z: torch.Tensor, loss_fn) -> torch.Tensor:
        """f(x with group g set to k) for every draw x in ``z`` (n, ..., G, V), every g and k: shape (n, ..., G, V),
        from calls of ``loss_fn`` on (substitutions x n, ..., G, V) of at most SUBSTITUTION_ELEMENTS elements."""
        n, batch, (groups, categories) = z.shape[0], z.shape[1:-2], z.shape[-2:]
        count = groups * categories
        block = max(1, SUBSTITUTION_ELEMENTS // max(1, z.numel()))
        parts = []
        for start in range(0, count, block):
            stop = min(count, start + block)
            values = substitutions(z, start, stop).reshape((stop - start) * n, *batch, groups, categories)
            parts.append(
                call_loss(loss_fn, values, ((stop - start) * n, *batch), self.spec).reshape(stop - start, n, *batch)
            )
        return torch.cat(parts).movedim(0, -1).reshape(n, *batch, groups, categories)
