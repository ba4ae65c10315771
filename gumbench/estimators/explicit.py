"""Helpers of the estimators that compute their estimate explicitly, as a tensor, before handing it back:
ReinMax-CV and FOGZO (which combine per-sample pieces with data-dependent weights), RELAX and REBAR
(which train their control variate on the squared estimate).

Such an estimator evaluates ``loss_fn`` on hard one-hot samples, takes the upstream gradient u = df/dz at
each sample where it needs it (:func:`loss_and_upstream`), builds the estimate g (..., G, V) per row, and
returns the surrogate ``f + <x - sg(x), sg(g)>`` (:func:`estimate_surrogate`, x the logits with masked
entries as 0): its value is the loss, its gradient at the logits is exactly g, and parameters inside
``loss_fn`` get their ordinary pathwise gradient from f at the samples.
"""

from __future__ import annotations

import torch

from gumbench.estimators.base import call_loss, one_hot


def jacobian_product(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """J(p) u with J(p) = diag(p) - p p^T, the softmax Jacobian at p, over the last dimension."""
    return probs * u - probs * (probs * u).sum(dim=-1, keepdim=True)


def loss_and_upstream(loss_fn, indices: torch.Tensor, categories: int, dtype: torch.dtype, who: str,
                      upstream: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(one-hots z, losses f, upstream gradients u = df/dz or None) at the samples ``indices`` (S, ..., G):
    one call of ``loss_fn`` on (S, ..., G, V). The graph of f is kept, so a later backward reaches the
    parameters inside ``loss_fn``; z is a fresh leaf, so the logits get nothing from it."""
    z = one_hot(indices, categories, dtype)
    if upstream:
        z.requires_grad_(True)
    f = call_loss(loss_fn, z, indices.shape[:-1], who)
    u = None
    if upstream:
        (u,) = torch.autograd.grad(f.sum(), z, retain_graph=f.requires_grad, allow_unused=True)
        u = torch.zeros_like(z) if u is None else u
    return z.detach(), f, u


def estimate_surrogate(logits: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Per row, ``<x - sg(x), sg(estimate)>`` summed over (G, V): exactly 0 in value, ``estimate`` as the gradient
    at ``logits`` (masked -inf entries enter as 0 and get no gradient)."""
    x = logits.masked_fill(torch.isneginf(logits), 0.0)
    g = estimate.detach().to(x.dtype)
    return ((x - x.detach()) * g).sum(dim=(-2, -1))


def leave_one_out_mean(values: torch.Tensor) -> torch.Tensor:
    """For each of S values along dim 0, the mean of the other S - 1 (S >= 2)."""
    return (values.sum(0, keepdim=True) - values) / (values.shape[0] - 1)
