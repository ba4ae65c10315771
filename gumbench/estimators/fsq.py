"""Finite scalar quantization (Mentzer, Minnen, Agustsson and Tschannen 2023, "Finite Scalar
Quantization: VQ-VAE Made Simple").

Each of the D = len(levels) dimensions of a vector z (..., G, D) is bounded and rounded on its
own; the codes are the grid of prod(levels) points, so there is no codebook to learn and no
auxiliary loss. With L_i levels in dimension i, h_i = (L_i - 1)(1 + 1e-3)/2, the offset
o_i = 1/2 for even L_i (0 for odd) and the shift s_i = atanh(o_i / h_i):

    bound      b_i = h_i tanh(z_i + s_i) - o_i        (in (-h_i - o_i, h_i - o_i))
    round      r_i = round(b_i), straight through: its gradient is that of b_i
    normalize  value_i = r_i / floor(L_i / 2)         (in [-1, 1])

so the gradient at z_i is h_i (1 - tanh^2(z_i + s_i)) / floor(L_i/2) times the upstream one. The
digit (level index) of dimension i is r_i + floor(L_i/2), in 0..L_i - 1, and the code index is
sum_i digit_i * prod_{j<i} L_j: the first dimension is the least significant digit (the paper's
listing and vector-quantize-pytorch's order).

The bound is vector-quantize-pytorch's (1.32.0 and 1.34.1, ``FSQ.bound``), which is the paper's Appendix A.1
listing with two corrections: the margin is (1 + 1e-3) where the listing has (1 - 1e-3), and the
shift of even levels is atanh(o/h), the exact inverse of the tanh (the listing has tan(o/h)), so
that z = 0 sits on the boundary between the two middle levels. Levels of 2 are refused:
with this bound they give the values {-1, 0}, and every z above about -3.8 lands on 0
(vector-quantize-pytorch refuses them too unless its symmetric variant is on). Levels above 1000 are
refused because the 1 + 1e-3 margin would round past the last level.

Inputs are any finite float vectors; fp16 and bf16 are computed in fp32 and the value, the
multiples r_i / floor(L_i/2), is cast back to the input dtype.
The codebook the training bottleneck passes is not read: its shape must be (G, prod(levels), D) or
(prod(levels), D), see :mod:`gumbench.estimators.implicit`.
"""

from __future__ import annotations

import math

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, call_loss, register
from gumbench.estimators.implicit import ImplicitCodebookVQ
from gumbench.kernels.reference import compute_dtype

MAX_DIMENSIONS = 16
MAX_CODES = 65_536  # the training tasks' largest codebook (gumbench.benchmarks.training.base.CODES)
LEVEL_RANGE = (3, 1000)
MARGIN = 1e-3  # the bound's (1 + MARGIN): vector-quantize-pytorch's eps


def parse_levels(owner: str, text: str, low: int = LEVEL_RANGE[0]) -> tuple[int, ...]:
    """'8-5-5-5' -> (8, 5, 5, 5), with every rule checked; one clear line otherwise. ``low``: the fewest levels
    allowed (FSQ's bound makes 2 degenerate; quantizers without it may allow 2)."""
    high = LEVEL_RANGE[1]
    parts = text.split("-")
    if not all(part.isascii() and part.isdigit() for part in parts):  # the rule of gumbench.registry.parse_number
        raise GumbenchError(f"{owner}: levels must be integers joined by '-', such as 8-5-5-5, got {text!r}")
    levels = tuple(int(part) for part in parts)
    if len(levels) > MAX_DIMENSIONS:
        raise GumbenchError(
            f"{owner}: levels may name at most {MAX_DIMENSIONS} dimensions, got {len(levels)} in {text!r}"
        )
    bad = [level for level in levels if not low <= level <= high]
    if bad:
        why = " (2 levels make a degenerate bound)" if low == LEVEL_RANGE[0] else ""
        raise GumbenchError(f"{owner}: every level must be in [{low}, {high}]{why}, got {bad[0]} in {text!r}")
    codes = math.prod(levels)
    if codes > MAX_CODES:
        raise GumbenchError(f"{owner}: the levels' product (the number of codes) must be at most {MAX_CODES:,}, "
                            f"got {codes:,} for {text!r}")
    return levels


class LevelGrid(ImplicitCodebookVQ):
    """An implicit codebook that is a grid of ``levels`` (parsed by ``validate`` into ``self.levels``): prod(levels)
    codes of dimension len(levels), one level index per dimension (FSQ, FSP)."""

    levels: tuple[int, ...]
    codes: int

    def code_shape(self, dim: int) -> tuple[int, int]:
        return self.codes, len(self.levels)

    def code_space(self, codes: int | None = None, code_dim: int | None = None) -> tuple[int, int] | None:
        """prod(levels) codes of dimension len(levels), whatever a task proposes; None if it sets others."""
        fixed = self.codes, len(self.levels)
        return fixed if codes in (None, fixed[0]) and code_dim in (None, fixed[1]) else None

    def digit_levels(self, dim: int | None = None) -> tuple[int, ...]:
        if dim is not None and dim != len(self.levels):
            raise GumbenchError(f"{self.label}: codes have dimension {len(self.levels)} (one per level), got dim={dim}")
        return self.levels


@register
class FSQ(LevelGrid):
    name = "fsq"
    description = (
        "Finite scalar quantization: each dimension bounded by tanh, rounded to one of L_i levels "
        "(straight-through) and scaled to [-1, 1]; implicit codebook of prod(levels) codes, no auxiliary loss."
    )
    defaults = {"levels": "8-5-5-5"}
    first_digit_least = True

    def validate(self) -> None:
        self.levels = parse_levels(self.name, self.params["levels"])
        self.codes = math.prod(self.levels)

    def _constants(self, dtype: torch.dtype, device: torch.device):
        levels = torch.tensor(self.levels, dtype=dtype, device=device)
        half_width = torch.div(levels, 2, rounding_mode="floor")
        half_range = (levels - 1) * (1 + MARGIN) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0).to(dtype)
        shift = torch.atanh(offset / half_range)
        return half_width, half_range, offset, shift

    def _bounded(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bounded values b, half widths floor(L/2)) in z's dtype."""
        half_width, half_range, offset, shift = self._constants(z.dtype, z.device)
        return torch.tanh(z + shift) * half_range - offset, half_width

    def _indices(self, vectors: torch.Tensor) -> torch.Tensor:
        bounded, half_width = self._bounded(vectors.to(compute_dtype(vectors.dtype)))
        return self._digits_to_index(torch.round(bounded) + half_width)

    def _digits_to_index(self, digits: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor(self.levels, dtype=torch.int64, device=digits.device)
        basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        return (digits.to(torch.int64) * basis).sum(-1)

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The implicit code vectors of ``indices``; the codebook is not read."""
        return self.codes_of(indices, codebook.dtype)

    def codes_of(self, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The code vectors (..., G, D) in [-1, 1] of code indices (..., G)."""
        digits = self.index_digits(indices).to(dtype)
        half_width = torch.tensor([level // 2 for level in self.levels], dtype=dtype, device=digits.device)
        return (digits - half_width) / half_width

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        self.check(inputs, codebook)
        z = inputs.to(compute_dtype(inputs.dtype))  # fp16/bf16: in fp32
        bounded, half_width = self._bounded(z)
        rounded = torch.round(bounded)
        indices = self._digits_to_index(rounded.detach() + half_width)
        value = ((bounded + (rounded - bounded).detach()) / half_width).to(inputs.dtype)
        loss = call_loss(loss_fn, value, inputs.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
