"""Exact expectations and gradients by enumerating every configuration of G groups of V categories.

E_{z ~ p_theta}[f(z)] with p_theta(z) = prod_g softmax(theta_g)[z_g] is a sum over the V^G
configurations (at most :data:`MAX_ENUMERATION`); autograd of that sum in float64 is the exact gradient.
"""

from __future__ import annotations

import itertools
import math

import torch

from gumbench.errors import GumbenchError

MAX_ENUMERATION = 65_536
ENUMERATION_BLOCK = 2**20  # one-hot elements scored at once by enumerated_losses


def enumerate_configurations(groups: int, categories: int) -> torch.Tensor:
    """All V^G assignments as indices, shape (V^G, G); a clear error above 65,536."""
    if categories > 1 and groups * math.log2(categories) > math.log2(MAX_ENUMERATION):  # V^G not computed: it can
        shown = categories**groups if groups < 64 else f"about 2^{groups * math.log2(categories):,.0f}"  # be huge
        raise GumbenchError(
            f"exact gradients enumerate V^G = {categories}^{groups} = {shown} configurations; "
            f"at most {MAX_ENUMERATION} are allowed (use fewer groups or categories)"
        )
    count = categories**groups
    return torch.tensor(list(itertools.product(range(categories), repeat=groups)), dtype=torch.long).reshape(
        count, groups
    )


def enumerated_losses(
    logits: torch.Tensor, loss_fn, sample_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every configuration of logits (G, V) as indices (V^G, G) and ``loss_fn`` on its one-hots (V^G,),
    checked: a tensor of that shape, finite for every configuration."""
    if logits.dim() != 2:
        raise GumbenchError(f"exact expectation needs logits of shape (G, V), got {tuple(logits.shape)}")
    groups, categories = logits.shape
    index = enumerate_configurations(groups, categories).to(logits.device)
    # the one-hots are built and scored in blocks of about ENUMERATION_BLOCK elements: V^G x G x V
    # elements at once (4,096^2 for one group of 4,096) would cost more in fresh memory than in arithmetic
    block = max(1, ENUMERATION_BLOCK // max(1, groups * categories))
    parts = []
    with torch.no_grad():
        for start in range(0, index.shape[0], block):
            rows = index[start : start + block]
            onehots = torch.zeros(*rows.shape, categories, dtype=sample_dtype or logits.dtype, device=logits.device)
            part = loss_fn(onehots.scatter_(-1, rows.unsqueeze(-1), 1.0))
            if not isinstance(part, torch.Tensor) or part.shape != (rows.shape[0],):
                got = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
                raise GumbenchError(f"loss_fn must map (N, G, V) one-hots to a tensor of shape (N,), got {got}")
            parts.append(part)
    values = torch.cat(parts)
    finite = torch.isfinite(values)
    if not finite.all():
        bad = int((~finite).nonzero()[0, 0])
        raise GumbenchError(f"loss_fn returned {float(values[bad])} for configuration {tuple(index[bad].tolist())} "
                            f"(the category of each group); it must be finite for every configuration")
    return index, values


def exact_expectation(logits: torch.Tensor, loss_fn, *, sample_dtype: torch.dtype | None = None) -> torch.Tensor:
    """E_{z ~ p_logits}[loss(z)] by enumeration, differentiable in ``logits`` (G, V).

    ``loss_fn`` receives one-hots in ``sample_dtype`` (default: the logits' dtype), so a float32
    model can be evaluated while the weights and the sum are in float64.
    """
    index, values = enumerated_losses(logits, loss_fn, sample_dtype)
    values = values.to(logits.dtype)
    log_p = torch.log_softmax(logits, dim=-1)
    log_p_config = log_p.gather(-1, index.T).sum(0) if logits.shape[0] else log_p.new_zeros(1)
    # 0 * f stays 0 for configurations of probability 0 (masked categories), f finite.
    return (log_p_config.exp() * values).sum()


def exact_gradient(logits: torch.Tensor, loss_fn) -> tuple[torch.Tensor, float]:
    """Gradient of E[loss] w.r.t. logits (G, V) by enumeration, in float64; also returns E[loss]."""
    leaf = logits.detach().to(torch.float64).requires_grad_(True)
    expectation = exact_expectation(leaf, loss_fn, sample_dtype=logits.dtype)
    (grad,) = torch.autograd.grad(expectation, leaf)
    return grad, float(expectation.detach())
