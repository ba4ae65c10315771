"""Score-function estimators over k configurations sampled without replacement.

A configuration z = (z_1..z_G) of G independent groups has p(z) = prod_g softmax(logits_g)[z_g]. The k
configurations with the largest perturbed log-probabilities log p(z) + g_z (g_z iid Gumbel over all V^G
configurations: the Gumbel-top-k trick) are a sample without replacement; stochastic beam search (Kool,
van Hoof and Welling 2019, "Stochastic Beams and Where to Find Them", ICML) finds them group by group
without enumerating V^G, by drawing each child's perturbation conditioned on its parent's maximum:

    G_child = -log(exp(-G_parent) - exp(-Z) + exp(-G~_child)),   G~_child ~ Gumbel(phi_child), Z = max G~,

(the numerically stable form of the paper's appendix), keeping the top k partial configurations. The
configurations come sorted by perturbed value, so the first is an ordinary sample from p.

unordered-set (Kool, van Hoof and Welling 2020, "Estimating Gradients for Discrete Random Variables by
Sampling without Replacement", ICLR). With S the unordered set of k samples, p(S) its probability and
R(S, s) = p^{D\\{s}}(S\\{s}) / p(S) the leave-one-out ratio,

    grad E[f] ~ sum_{s in S} grad p(s) R(S, s) (f(s) - B(S, s)),
    B(S, s) = p(s) f(s) + sum_{s' in S, s' != s} p(s') p^{D\\{s,s'}}(S\\{s,s'}) / p^{D\\{s}}(S\\{s}) f(s'),

the built-in baseline (its eq. 18; B = 0 with ``baseline=none``), unbiased either way. The set probabilities are
exact sums over orderings, p^{D'}(T) = sum_{orderings} prod_i p(t_i) / (r + sum_{j >= i} p(t_j)), with r = p(D\\S)
the mass outside S, the same for every domain D' = D minus elements of S (the renormalisations cancel); in log
space and float64, so k! terms (k <= 6).

reinforce-wor (REINFORCE without replacement: Kool, van Hoof and Welling 2019, "Buy 4 REINFORCE Samples, Get a
Baseline for Free!"). With k + 1 beams, kappa the (k + 1)-th perturbed value, q(s) = P(log p(s) + g > kappa) =
1 - exp(-exp(log p(s) - kappa)) and importance weights w_s = p(s) / q(s) (priority sampling),

    none:        grad ~ sum_s w_s grad log p(s) f(s)                                  (unbiased)
    normalized:  grad ~ sum_s (w_s / W) grad log p(s) (f(s) - B),   W = sum_s w_s,   B = sum_s w_s f(s) / W,

the normalized, built-in-baseline form: biased, consistent as k grows (its bias has no closed form).

Both evaluate ``loss_fn`` once on the k configurations, shape (k, ..., G, V). ``loss`` and the surrogate's value
are the matching estimate of E[f] (sum_s p(s) R(S, s) f(s); sum_s w_s f(s), over W when normalized), whose
pathwise gradient reaches parameters inside ``loss_fn``.
"""

from __future__ import annotations

import itertools
import math

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.kernels.reference import gumbel_noise
from gumbench.plugin import Range

SET_SIZES = Range(2, 6, meaning="k, the configurations sampled without replacement (k! orderings are summed)")


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends; -inf at 0."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_inclusion(x: torch.Tensor) -> torch.Tensor:
    """log q = log(1 - exp(-exp(x))), x = log p(s) - kappa: the probability that s's perturbed value passes kappa;
    x itself below -30 (there q = e^x (1 - O(e^x))), 0 at x = +inf."""
    return torch.where(x < -30, x, log1mexp(-torch.exp(x.clamp_min(-30))))


def truncated_gumbel(parent: torch.Tensor, maximum: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Perturbed values shifted so that their maximum is the parent's, -inf where the parent or the child is -inf."""
    v = parent - perturbed + log1mexp(perturbed - maximum)
    out = parent - v.clamp_min(0) - torch.log1p(torch.exp(-v.abs()))
    return torch.where(torch.isfinite(parent) & torch.isfinite(perturbed), out, -math.inf)


def stochastic_beam_search(log_probs: torch.Tensor, beams: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beams`` configurations of log_probs (..., G, V) (float64 log-softmax) with the largest Gumbel-perturbed
    log-probability: indices (beams, ..., G) and perturbed values (beams, ...), sorted by decreasing value."""
    batch, (groups, categories) = log_probs.shape[:-2], log_probs.shape[-2:]
    dtype, device = log_probs.dtype, log_probs.device
    phi = torch.full((*batch, beams), -math.inf, dtype=dtype, device=device)
    phi[..., 0] = 0.0
    top = torch.full_like(phi, -math.inf)
    top[..., 0] = gumbel_noise(batch, generator=generator, device=device, dtype=dtype)
    prefix = torch.zeros(*batch, beams, 0, dtype=torch.long, device=device)
    for g in range(groups):
        children = phi.unsqueeze(-1) + log_probs[..., g, :].unsqueeze(-2)  # (..., beams, V)
        perturbed = children + gumbel_noise(children.shape, generator=generator, device=device, dtype=dtype)
        values = truncated_gumbel(top.unsqueeze(-1), perturbed.amax(-1, keepdim=True), perturbed)
        best = values.flatten(-2).topk(beams, dim=-1)
        parent, category = best.indices.div(categories, rounding_mode="floor"), best.indices % categories
        phi, top = children.flatten(-2).gather(-1, best.indices), best.values
        kept = prefix.gather(-2, parent.unsqueeze(-1).expand(*parent.shape, g))
        prefix = torch.cat((kept, category.unsqueeze(-1)), -1)
    return prefix.movedim(-2, 0), top.movedim(-1, 0)


def set_log_probability(log_p: torch.Tensor, log_rest: torch.Tensor) -> torch.Tensor:
    """log p(T) of unordered sets T from log_p (..., m) of their elements and log r (...) of the mass outside the
    full sample: log sum over orderings of prod_i p(t_i) / (r + sum_{j >= i} p(t_j)); 0 for m = 0."""
    m = log_p.shape[-1]
    if m == 0:
        return torch.zeros_like(log_rest)
    orders = torch.tensor(list(itertools.permutations(range(m))), device=log_p.device)
    ordered = log_p[..., orders]  # (..., m!, m)
    tails = torch.logcumsumexp(ordered.flip(-1), dim=-1).flip(-1)
    denominators = torch.logaddexp(log_rest[..., None, None].expand_as(tails), tails)
    return torch.logsumexp((ordered - denominators).sum(-1), dim=-1)


def others(k: int, leave: int) -> torch.Tensor:
    """Index table of the elements of 0..k-1 left after removing ``leave`` = 1 (shape (k, k-1)) or 2 ((k, k, k-2);
    the diagonal s = s' is filled but unused)."""
    if leave == 1:
        return torch.tensor([[t for t in range(k) if t != s] for s in range(k)], dtype=torch.long)
    return torch.tensor([[[t for t in range(k) if t not in (s, s2)][: k - 2] if s != s2 else list(range(k - 2))
                          for s2 in range(k)] for s in range(k)], dtype=torch.long)


def configuration_log_probs(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """log p(z) (k, ...) of configurations indices (k, ..., G) under logits (..., G, V), with gradient (float64)."""
    log_probs = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return log_probs.expand(indices.shape[0], *log_probs.shape).gather(-1, indices.unsqueeze(-1)).squeeze(-1).sum(-1)


class WithoutReplacement(CategoricalEstimator):
    """Shared parts: the sample, its losses and the support check."""

    family = "score-function"
    extra_beams = 0  # reinforce-wor also needs the (k + 1)-th perturbed value

    @property
    def loss_evaluations(self) -> int:
        return self.params["samples"]

    def draw(self, logits, loss_fn, generator):
        """(indices (k, ..., G), perturbed values (k + extra, ...), log p (k, ...) with gradient, f (k, ...),
        one-hots)."""
        k = self.params["samples"]
        counts = (~torch.isneginf(logits.detach())).sum(-1).to(torch.float64)  # (..., G)
        if logits.shape[-2] and bool((counts.log().sum(-1) < math.log(k) - 1e-9).any()):
            raise GumbenchError(f"{self.spec}: a row has fewer than {k} configurations of positive probability "
                                "(unmasked categories multiplied over groups); lower samples")
        with torch.no_grad():
            log_probs = torch.log_softmax(logits.detach().to(torch.float64), dim=-1)
            indices, perturbed = stochastic_beam_search(log_probs, k + self.extra_beams, generator)
        indices = indices[:k]
        value = one_hot(indices, logits.shape[-1], logits.dtype)
        f = call_loss(loss_fn, value, indices.shape[:-1], self.spec)
        return indices, perturbed, configuration_log_probs(logits, indices), f, value


@register
class UnorderedSet(WithoutReplacement):
    name = "unordered-set"
    description = ("Unordered set estimator (Kool 2020): k configurations without replacement (stochastic beam "
                   "search), sum grad p(s) R(S,s) (f(s) - B) with the built-in baseline; unbiased, k loss evaluations.")
    defaults = {"samples": 4, "baseline": "builtin"}
    choices = {"baseline": ("builtin", "none")}
    ranges = {"samples": SET_SIZES}
    variants = ({"baseline": "builtin"},)

    def estimate(self, logits, loss_fn, generator):
        indices, _, log_p, f, value = self.draw(logits, loss_fn, generator)
        k, fd = indices.shape[0], f.detach().to(torch.float64)
        with torch.no_grad():
            lp = log_p.detach().movedim(0, -1)  # (..., k)
            log_rest = log1mexp(torch.logsumexp(lp, -1).clamp_max(0.0))
            log_set = set_log_probability(lp, log_rest)  # (...)
            log_without = set_log_probability(lp[..., others(k, 1)], log_rest.unsqueeze(-1))  # (..., k): p^{D\s}(S\s)
            weights = (lp + log_without - log_set.unsqueeze(-1)).exp()  # p(s) R(S, s)
            fk = fd.movedim(0, -1)
            baseline = torch.zeros_like(fk)
            if self.params["baseline"] == "builtin" and k > 1:
                log_pair = set_log_probability(lp[..., others(k, 2)], log_rest[..., None, None])  # (..., k, k)
                ratio = (lp.unsqueeze(-2) + log_pair - log_without.unsqueeze(-1)).exp()  # [s, s']: p(s') R^{D\s}(S, s')
                eye = torch.eye(k, dtype=torch.bool, device=lp.device)
                ratio = torch.where(eye, lp.exp().unsqueeze(-1).expand_as(ratio), ratio)  # s' = s: p(s) itself
                baseline = (ratio * fk.unsqueeze(-2)).sum(-1)
            coefficient = (weights * (fk - baseline)).movedim(-1, 0)
        score = (coefficient * (log_p - log_p.detach())).sum(0)
        estimate = (weights.movedim(-1, 0).to(f.dtype) * f).sum(0)
        surrogate = estimate + score.to(f.dtype)
        return EstimatorOutput(surrogate=surrogate, value=value, indices=indices, loss=estimate, aux={})


@register
class ReinforceWithoutReplacement(WithoutReplacement):
    name = "reinforce-wor"
    description = ("REINFORCE without replacement (Kool 2019): k configurations by stochastic beam search, "
                   "priority-sampling weights p/q_kappa; baseline none (unbiased) or normalized (built-in baseline, "
                   "biased); k loss evaluations.")
    defaults = {"samples": 4, "baseline": "normalized"}
    choices = {"baseline": ("normalized", "none")}
    ranges = {"samples": Range(1, 100, meaning="k, the configurations sampled without replacement")}
    variants = ({"baseline": "normalized"},)
    extra_beams = 1

    def estimate(self, logits, loss_fn, generator):
        indices, perturbed, log_p, f, value = self.draw(logits, loss_fn, generator)
        fd = f.detach().to(torch.float64)
        with torch.no_grad():
            kappa = perturbed[-1]  # (...): -inf when only k configurations have positive probability (then q = 1)
            log_weights = log_p.detach() - log_inclusion(log_p.detach() - kappa)  # log p(s) / q(s)
            if self.params["baseline"] == "normalized":
                weights = torch.softmax(log_weights, dim=0)
                coefficient = weights * (fd - (weights * fd).sum(0, keepdim=True))
            else:
                weights = log_weights.exp()
                coefficient = weights * fd
        score = (coefficient * (log_p - log_p.detach())).sum(0)
        estimate = (weights.to(f.dtype) * f).sum(0)
        surrogate = estimate + score.to(f.dtype)
        return EstimatorOutput(surrogate=surrogate, value=value, indices=indices, loss=estimate, aux={})
