"""Codebook utilization: how many codes a discrete bottleneck really uses.

Conventions follow fairseq's wav2vec 2.0 quantizer logs. For G groups of V codes:

code perplexity   per group exp(H(u_g)), u_g the histogram of hard code usage over frames; V at
                  uniform usage, 1 at collapse. The overall value is the sum over groups, at
                  most G * V. In training rows of a categorical estimator the codes are the
                  noiseless argmax(logits) (fairseq's ``code_perplexity``, which
                  GumbelVectorQuantizer computes from the argmax of the logits even in
                  training); ``sampled_code_perplexity`` is the same on the codes the forward
                  pass used (argmax(logits + g) for the Gumbel estimators). For VQ estimators,
                  which draw nothing, the two are equal.
prob perplexity   the same on the noiseless softmax averaged over frames, p_g = mean_t
                  softmax(logits_tg) (fairseq's ``prob_perplexity``).
used fraction     share of codes chosen at least once.
usage entropy     H(u_g) in nats.
dead codes        codes not chosen during the last ``window`` steps (:class:`UsageTracker`).
churn             share of frames of a fixed evaluation batch whose code changed since the
                  previous evaluation.
perplexity gap    prob perplexity - code perplexity (soft usage the hard codes do not show).
collapse alarm    any group with code perplexity <= ``collapse_threshold`` (2 by default).

Implicit codebooks (FSQ, LFQ, BSQ: a code is a tuple of per-dimension levels, L_i levels in
dimension i, prod_i L_i codes; :func:`implicit_usage` takes the code indices (..., G), the
per-dimension digits (..., G, D) that the estimator's ``index_digits`` gives and the levels):

code perplexity, used fraction   as above, over the prod_i L_i codes (counting only the codes
                  seen, so products far larger than the batch cost nothing).
effective bits    H(u_g) in bits, log2 of the code perplexity; at most ``code_bits`` =
                  log2 prod_i L_i = sum_i log2 L_i.
dim perplexity    per dimension i, exp of the entropy of the histogram of its levels; at most L_i.
dim bits          that entropy in bits, at most log2 L_i; their sum over dimensions is at least
                  the effective bits (the difference is the dimensions' total correlation).

Residual quantizers (S stages of codes per group; :func:`stage_usage` takes the stage indices
(..., G, S) and the code count of each stage): per stage, code perplexity, used fraction and dead
codes as above (:class:`StageUsageTracker`); jointly, the perplexity of the distinct S-tuples
observed per group (at most the number of frames and prod_s K_s) and its log2, the joint bits.

Training rows (:func:`gumbench.benchmarks.training.train`) carry, besides ``code_perplexity``,
``used_fraction``, ``usage_entropy``, ``collapse``, ``prob_perplexity``, ``perplexity_gap`` and
``code_perplexity_g{g}`` (of the noiseless argmax for categorical estimators), ``sampled_code_perplexity``
and ``dead_codes`` (of the codes the forward pass used):

- for an estimator with ``index_digits`` (implicit codebook): ``effective_bits`` (mean over
  groups), ``code_bits``, ``dim_bits`` (sum over dimensions, mean over groups), and per dimension
  ``dim_perplexity_d{i}``, ``dim_bits_d{i}`` (means over groups) and ``dim_max_bits_d{i}`` =
  log2 L_i; ``effective_bits_g{g}`` per group when G > 1;
- for a bottleneck output with stage indices (residual): per stage ``code_perplexity_s{s}`` (sum
  over groups), ``used_fraction_s{s}`` (mean over groups) and ``dead_codes_s{s}`` (sum over groups,
  over the same window as ``dead_codes``); ``joint_code_perplexity`` (sum over groups),
  ``joint_bits`` (mean over groups) and ``joint_max_bits`` = sum_s log2 K_s.

Overall values follow ``code_perplexity``'s convention: perplexities sum over groups, fractions,
entropies and bits average over them.

The wav2vec 2.0 diversity loss is (G V - sum_g exp(H(p_g))) / (G V) = (G V - prob perplexity) /
(G V) with the exact entropy: 0 at uniform soft usage, (G V - G) / (G V) when each group puts all
its mass on one code (fairseq and Hugging Face take log(p + 1e-7); see :func:`diversity_loss`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
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
    """wav2vec 2.0's diversity loss (G V - sum_g exp(H(mean softmax_g))) / (G V); differentiable.

    The entropy is exact (0 log 0 = 0, computed in float64 like :func:`prob_perplexity`), so the loss
    is (G V - prob_perplexity) / (G V), 0 at uniform soft usage. fairseq and Hugging Face put 1e-7
    inside the log (``log(p + 1e-7)``), which leaves about V x 1e-7 at uniform usage (3.2e-5 for
    V = 320, 8.2e-4 for V = 8,192; tests/benchmarks/test_utilization.py); the loss is returned in
    float32, the dtype of the other loss terms.
    """
    groups, codes = logits.shape[-2:]
    probs = torch.softmax(logits.double(), dim=-1).reshape(-1, groups, codes).mean(0)
    return ((groups * codes - perplexity(probs).sum()) / (groups * codes)).float()


def code_churn(previous: torch.Tensor | None, current: torch.Tensor) -> float | None:
    """Share of (frame, group) codes that changed between two evaluations of the same frames."""
    if previous is None:
        return None
    if previous.shape != current.shape:
        raise GumbenchError(
            f"churn compares the same frames: shapes {tuple(previous.shape)} and {tuple(current.shape)}"
        )
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


def summarize(
    indices: torch.Tensor,
    codes: int,
    logits: torch.Tensor | None = None,
    *,
    collapse_threshold: float = COLLAPSE_THRESHOLD,
) -> UsageSummary:
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


def _index_tensor(what: str, value, dims: int) -> torch.Tensor:
    """An integer tensor with at least ``dims`` dimensions, or one clear error."""
    if (
        not isinstance(value, torch.Tensor)
        or value.is_floating_point()
        or value.is_complex()
        or value.dtype == torch.bool
        or value.dim() < dims
        or min(value.shape[-dims:]) < 1
    ):
        got = (
            f"{value.dtype} of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        )
        shape = "(..., G)" if dims == 1 else "(..., G, D)" if what == "digits" else "(..., G, S)"
        raise GumbenchError(f"{what} must be an integer tensor of shape {shape} with sizes >= 1 there, got {got}")
    return value


def _counts_per_level(what: str, values: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """For each last-dim entry i, counts (G, sizes[i]) of values (..., G, I) after checking their range."""
    flat = values.reshape(-1, *values.shape[-2:]).long()  # (N, G, I)
    out = []
    for i, size in enumerate(sizes):
        column = flat[..., i]
        if column.numel() and (column.min() < 0 or column.max() >= size):
            raise GumbenchError(f"{what} {i} must lie in [0, {size}), got [{int(column.min())}, {int(column.max())}]")
        out.append(usage_counts(column, size))
    return out


def distinct_counts(rows: torch.Tensor) -> list[torch.Tensor]:
    """Per group, how often each distinct tuple occurs: rows (..., G, S) -> G tensors of counts
    (float64, in no particular order, only the tuples seen)."""
    flat = rows.reshape(-1, *rows.shape[-2:])  # (N, G, S)
    return [torch.unique(flat[:, g], dim=0, return_counts=True)[1].double() for g in range(flat.shape[1])]


def _entropy_of_counts(counts: torch.Tensor) -> torch.Tensor:
    return entropy(counts / counts.sum().clamp_min(1)) if counts.numel() else torch.zeros((), dtype=torch.float64)


def _check_levels(what: str, levels) -> tuple[int, ...]:
    if isinstance(levels, (int, torch.Tensor)) or not isinstance(levels, Sequence) or not levels:
        raise GumbenchError(f"{what} must be a non-empty sequence of integers >= 1, got {levels!r}")
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int) or level < 1:
            raise GumbenchError(f"{what} must be a non-empty sequence of integers >= 1, got {tuple(levels)!r}")
    return tuple(levels)


@dataclass
class ImplicitUsage:
    """Utilization of an implicit codebook (FSQ, LFQ, BSQ) for one batch; see the module docstring."""

    levels: tuple[int, ...]
    code_perplexity: torch.Tensor  # (G,), over prod(levels) codes
    used_fraction: torch.Tensor  # (G,), distinct codes seen / prod(levels)
    effective_bits: torch.Tensor  # (G,), entropy of the code usage in bits
    dim_perplexity: torch.Tensor  # (G, D)
    dim_bits: torch.Tensor  # (G, D)

    @property
    def code_bits(self) -> float:
        """log2 of the number of codes, the most ``effective_bits`` can be."""
        return sum(math.log2(level) for level in self.levels)

    def as_row(self, prefix: str = "") -> dict[str, float]:
        row = {
            f"{prefix}effective_bits": float(self.effective_bits.mean()),
            f"{prefix}code_bits": self.code_bits,
            f"{prefix}dim_bits": float(self.dim_bits.sum(-1).mean()),
        }
        for i, level in enumerate(self.levels):
            row[f"{prefix}dim_perplexity_d{i}"] = float(self.dim_perplexity[:, i].mean())
            row[f"{prefix}dim_bits_d{i}"] = float(self.dim_bits[:, i].mean())
            row[f"{prefix}dim_max_bits_d{i}"] = math.log2(level)
        if self.effective_bits.numel() > 1:
            for g, value in enumerate(self.effective_bits.tolist()):
                row[f"{prefix}effective_bits_g{g}"] = value
        return row


def implicit_usage(indices: torch.Tensor, digits: torch.Tensor, levels: Sequence[int]) -> ImplicitUsage:
    """Usage of an implicit codebook: code indices (..., G) in [0, prod(levels)), their digits
    (..., G, D) with digit i in [0, levels[i]) (an estimator's ``index_digits(indices)``)."""
    levels = _check_levels("levels", levels)
    indices, digits = _index_tensor("indices", indices, 1), _index_tensor("digits", digits, 2)
    if tuple(digits.shape) != (*indices.shape, len(levels)):
        raise GumbenchError(f"digits must have shape indices.shape + (D,) = {(*indices.shape, len(levels))} for "
                            f"{len(levels)} levels, got {tuple(digits.shape)}")
    codes = math.prod(levels)
    flat = indices.reshape(-1, indices.shape[-1])
    if flat.numel() and (flat.min() < 0 or flat.max() >= codes):
        raise GumbenchError(f"code indices must lie in [0, {codes}) (the product of levels {levels}), "
                            f"got [{int(flat.min())}, {int(flat.max())}]")
    per_code = distinct_counts(indices.unsqueeze(-1))
    code_entropy = torch.stack([_entropy_of_counts(c) for c in per_code])  # (G,)
    dim_entropy = torch.stack(
        [entropy(c / c.sum(-1, keepdim=True).clamp_min(1)) for c in _counts_per_level("digit", digits, levels)], -1
    )  # (G, D)
    return ImplicitUsage(
        levels=levels,
        code_perplexity=torch.exp(code_entropy),
        used_fraction=torch.tensor([c.numel() / codes for c in per_code], dtype=torch.float64),
        effective_bits=code_entropy / math.log(2),
        dim_perplexity=torch.exp(dim_entropy),
        dim_bits=dim_entropy / math.log(2),
    )


def _stage_codes(codes, stages: int) -> tuple[int, ...]:
    if isinstance(codes, int) and not isinstance(codes, bool):
        codes = (codes,) * stages
    codes = _check_levels("codes per stage", codes)
    if len(codes) != stages:
        raise GumbenchError(f"codes per stage: {len(codes)} values for {stages} stages")
    return codes


@dataclass
class StageUsage:
    """Utilization of a residual quantizer's stages for one batch; see the module docstring."""

    codes: tuple[int, ...]  # K_s per stage
    code_perplexity: torch.Tensor  # (G, S)
    used_fraction: torch.Tensor  # (G, S)
    joint_perplexity: torch.Tensor  # (G,), of the distinct S-tuples seen
    joint_bits: torch.Tensor  # (G,)

    @property
    def joint_max_bits(self) -> float:
        return sum(math.log2(k) for k in self.codes)

    def as_row(self, prefix: str = "", dead_codes: torch.Tensor | None = None) -> dict[str, float]:
        """Per stage and joint columns; ``dead_codes`` (G, S) from a :class:`StageUsageTracker`."""
        row = {}
        for s in range(len(self.codes)):
            row[f"{prefix}code_perplexity_s{s}"] = float(self.code_perplexity[:, s].sum())
            row[f"{prefix}used_fraction_s{s}"] = float(self.used_fraction[:, s].mean())
            if dead_codes is not None:
                row[f"{prefix}dead_codes_s{s}"] = float(dead_codes[:, s].sum())
        row[f"{prefix}joint_code_perplexity"] = float(self.joint_perplexity.sum())
        row[f"{prefix}joint_bits"] = float(self.joint_bits.mean())
        row[f"{prefix}joint_max_bits"] = self.joint_max_bits
        return row


def used_rows(stage_indices: torch.Tensor, stage: int) -> torch.Tensor:
    """The rows (N, G) of stage ``stage`` that ran: quantizer dropout marks a row's unused stages -1
    (all of its groups together), and those rows are left out of that stage's usage."""
    flat = stage_indices.reshape(-1, *stage_indices.shape[-2:])[..., stage]  # (N, G)
    return flat[(flat >= 0).all(-1)]


def stage_usage(stage_indices: torch.Tensor, codes: int | Sequence[int]) -> StageUsage:
    """Usage of S residual stages: stage indices (..., G, S), stage s's in [0, K_s) or -1 where quantizer
    dropout left the stage out; ``codes`` is K for every stage or (K_0, ..., K_{S-1}). Each stage counts
    the rows that ran it; the joint usage counts the rows that ran every stage."""
    stage_indices = _index_tensor("stage indices", stage_indices, 2)
    codes = _stage_codes(codes, stage_indices.shape[-1])
    if stage_indices.numel() and stage_indices.min() < -1:
        raise GumbenchError(
            f"stage indices must be codes >= 0, or -1 for a stage dropout left out, got {int(stage_indices.min())}"
        )
    counts = []
    for s, k in enumerate(codes):
        rows = used_rows(stage_indices, s)
        if rows.numel() and rows.max() >= k:
            raise GumbenchError(f"stage {s} must lie in [0, {k}), got [{int(rows.min())}, {int(rows.max())}]")
        counts.append(usage_counts(rows, k))  # (G, K_s)
    usage = [c / c.sum(-1, keepdim=True).clamp_min(1) for c in counts]
    flat = stage_indices.reshape(-1, *stage_indices.shape[-2:])
    complete = flat[(flat >= 0).all(-1).all(-1)]  # rows that ran every stage
    joint = torch.stack([_entropy_of_counts(c) for c in distinct_counts(complete)])  # (G,)
    return StageUsage(
        codes=codes,
        code_perplexity=torch.stack([perplexity(u) for u in usage], -1),
        used_fraction=torch.stack([(c > 0).double().mean(-1) for c in counts], -1),
        joint_perplexity=torch.exp(joint),
        joint_bits=joint / math.log(2),
    )


class StageUsageTracker:
    """Dead codes per group and stage over a sliding window of steps (one :class:`UsageTracker` per stage)."""

    def __init__(self, groups: int, codes: int | Sequence[int], stages: int, window: int = 50):
        self.trackers = [UsageTracker(groups, k, window) for k in _stage_codes(codes, stages)]

    def update(self, stage_indices: torch.Tensor) -> None:
        stage_indices = _index_tensor("stage indices", stage_indices, 2)
        if stage_indices.shape[-1] != len(self.trackers):
            raise GumbenchError(
                f"stage indices have {stage_indices.shape[-1]} stages, the tracker {len(self.trackers)}"
            )
        for s, tracker in enumerate(self.trackers):
            tracker.update(used_rows(stage_indices, s))

    def dead_codes(self) -> torch.Tensor:
        """(G, S): per group and stage, the codes unused over the window."""
        return torch.stack([tracker.dead_codes() for tracker in self.trackers], -1)
