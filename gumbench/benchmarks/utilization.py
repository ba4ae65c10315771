"""Codebook utilization: how many codes a discrete bottleneck really uses.

Conventions follow fairseq's wav2vec 2.0 quantizer logs. For G groups of V codes:

code perplexity   per group exp(H(u_g)), u_g the histogram of hard (argmax) code usage over
                  frames; V at uniform usage, 1 at collapse. The overall value is the sum
                  over groups (fairseq's ``code_perplexity``), at most G * V.
prob perplexity   the same on the noiseless softmax averaged over frames, p_g = mean_t
                  softmax(logits_tg) (fairseq's ``prob_perplexity``).
used fraction     share of codes chosen at least once.
usage entropy     H(u_g) in nats.
dead codes        codes not chosen during the last ``window`` steps (:class:`UsageTracker`).
churn             share of frames of a fixed evaluation batch whose code changed since the
                  previous evaluation.
perplexity gap    prob perplexity - code perplexity (soft usage the hard codes do not show).
collapse alarm    any group with code perplexity <= ``collapse_threshold`` (2 by default).

The wav2vec 2.0 diversity loss is (G V - sum_g exp(H(p_g))) / (G V): 0 at uniform soft
usage, (G V - G) / (G V) when each group puts all its mass on one code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from gumbench.errors import GumbenchError

COLLAPSE_THRESHOLD = 2.0


def usage_counts(indices: torch.Tensor, codes: int) -> torch.Tensor:
    """Counts per group and code, (G, V), from indices of shape (..., G)."""
    if indices.dim() < 1:
        raise GumbenchError(f"indices need shape (..., G), got {tuple(indices.shape)}")
    flat = indices.reshape(-1, indices.shape[-1]).long()
    if flat.numel() and (flat.min() < 0 or flat.max() >= codes):
        raise GumbenchError(f"code indices must lie in [0, {codes}), got [{int(flat.min())}, {int(flat.max())}]")
    groups = flat.shape[1]
    offsets = torch.arange(groups, device=flat.device) * codes
    return torch.bincount((flat + offsets).reshape(-1), minlength=groups * codes).reshape(groups, codes).double()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats over the last dim; 0 log 0 = 0."""
    probs = probs.double()
    return -(probs * torch.log(probs.clamp_min(1e-300))).sum(-1)


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    return torch.exp(entropy(probs))


def code_perplexity(indices: torch.Tensor, codes: int) -> torch.Tensor:
    """Per-group perplexity of hard code usage, shape (G,)."""
    counts = usage_counts(indices, codes)
    return perplexity(counts / counts.sum(-1, keepdim=True).clamp_min(1))


def prob_perplexity(logits: torch.Tensor) -> torch.Tensor:
    """Per-group perplexity of the noiseless softmax averaged over frames; logits (..., G, V) -> (G,)."""
    probs = torch.softmax(logits.detach().double(), dim=-1).reshape(-1, *logits.shape[-2:]).mean(0)
    return perplexity(probs)


def diversity_loss(logits: torch.Tensor) -> torch.Tensor:
    """wav2vec 2.0's diversity loss (G V - sum_g exp(H(mean softmax_g))) / (G V); differentiable."""
    groups, codes = logits.shape[-2:]
    probs = torch.softmax(logits.float(), dim=-1).reshape(-1, groups, codes).mean(0)
    ppl = torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()
    return (groups * codes - ppl) / (groups * codes)


def code_churn(previous: torch.Tensor | None, current: torch.Tensor) -> float | None:
    """Share of (frame, group) codes that changed between two evaluations of the same frames."""
    if previous is None:
        return None
    if previous.shape != current.shape:
        raise GumbenchError(f"churn compares the same frames: shapes {tuple(previous.shape)} and {tuple(current.shape)}")
    return float((previous != current).double().mean())


@dataclass
class UsageSummary:
    """Utilization of one batch of indices (and optionally its logits)."""

    code_perplexity: torch.Tensor  # (G,)
    used_fraction: torch.Tensor  # (G,)
    usage_entropy: torch.Tensor  # (G,)
    prob_perplexity: torch.Tensor | None  # (G,), None without logits (VQ)
    collapse_threshold: float = COLLAPSE_THRESHOLD

    @property
    def collapsed(self) -> bool:
        return bool((self.code_perplexity <= self.collapse_threshold).any())

    def as_row(self, prefix: str = "") -> dict[str, float]:
        """Flat columns: overall values (sum of perplexities, mean of fractions) and per group."""
        row = {
            f"{prefix}code_perplexity": float(self.code_perplexity.sum()),
            f"{prefix}used_fraction": float(self.used_fraction.mean()),
            f"{prefix}usage_entropy": float(self.usage_entropy.mean()),
            f"{prefix}collapse": self.collapsed,
        }
        if self.prob_perplexity is not None:
            row[f"{prefix}prob_perplexity"] = float(self.prob_perplexity.sum())
            row[f"{prefix}perplexity_gap"] = float((self.prob_perplexity - self.code_perplexity).sum())
        if self.code_perplexity.numel() > 1:
            for g, value in enumerate(self.code_perplexity.tolist()):
                row[f"{prefix}code_perplexity_g{g}"] = value
        return row


def summarize(indices: torch.Tensor, codes: int, logits: torch.Tensor | None = None, *, collapse_threshold: float = COLLAPSE_THRESHOLD) -> UsageSummary:
    counts = usage_counts(indices, codes)
    usage = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    return UsageSummary(
        code_perplexity=perplexity(usage),
        used_fraction=(counts > 0).double().mean(-1),
        usage_entropy=entropy(usage),
        prob_perplexity=None if logits is None else prob_perplexity(logits),
        collapse_threshold=collapse_threshold,
    )


class UsageTracker:
    """Counts code usage over a sliding window of steps to report dead codes."""

    def __init__(self, groups: int, codes: int, window: int = 50):
        if window < 1:
            raise GumbenchError(f"window must be >= 1 step, got {window}")
        self.groups, self.codes = groups, codes
        self.window: deque[torch.Tensor] = deque(maxlen=window)

    def update(self, indices: torch.Tensor) -> None:
        self.window.append(usage_counts(indices, self.codes).cpu())

    def dead_codes(self) -> torch.Tensor:
        """Per group, the number of codes unused over the window, (G,)."""
        if not self.window:
            return torch.zeros(self.groups)
        return (torch.stack(list(self.window)).sum(0) == 0).sum(-1).double()
