"""Finite scalar perturbation, FSP (arXiv 2602.17133; vector-quantize-pytorch's ``FSP``): FSQ-like scalar
quantization whose bins are equiprobable under a fixed distribution F, with bin centres that are the
Lloyd-Max centres in CDF space, and, in training, a perturbation inside the bin instead of the rounding.

Each of the D = len(levels) dimensions of z (..., G, D) is mapped to a = F(z_i) in [0, 1] by the CDF ``act``
(tanh: (tanh z + 1)/2, sigmoid, normal, laplace or cauchy). With L_i levels the bins of a are
[j/L_i, (j+1)/L_i): equal-probability bins when z_i ~ F, so a ~ U(0, 1), whose L_i-level Lloyd-Max quantizer has
exactly these bins and their midpoints as centres. With eps the dtype's machine epsilon:

    digit    j_i = floor(min(a, 1 - eps) L_i)                     (0..L_i - 1)
    centre   q_i = (j_i + 1/2) / L_i, straight through: a + sg[q_i - a]
    training with ``rate`` < 1: per element, with probability 1 - rate, q_i is replaced by a + u_i, u_i ~
             U(-1/(2 L_i), 1/(2 L_i)) (kept only if a + u_i lies in (0, 1), else a): a perturbation within half a
             bin, drawn (u, then the choice) from ``generator``; rate = 1 (and eval) always quantizes
    value    (q_i - 1/2) sqrt(12)                                 (unit variance when a ~ U(0, 1))
             or, with ``inverse=true``, z_i + sg[F^{-1}(clip(q_i, eps, 1 - eps)) - z_i]  (the centre in z space)

so the gradient at z_i is sqrt(12) F'(z_i) times the upstream one (1 with inverse=true: straight-through).
The code index is sum_i j_i prod_{k<i} L_k (the first dimension least significant, as FSQ). There is no
auxiliary loss: vector-quantize-pytorch's ``vector_norm`` loss (on the batch's mean, variance, skewness and
kurtosis) is a statistic of the whole batch, which per-row estimates cannot carry; it is left out (its
``vector_norm="none"``). vector-quantize-pytorch's default ``quantize_rate = 0`` (always perturbed in training)
is this estimator's default ``rate``.

The codebook the training bottleneck passes is not read: its shape must be (G, prod(levels), D) or
(prod(levels), D), see :mod:`gumbench.estimators.implicit`.
"""

from __future__ import annotations

import math

import torch

from gumbench.estimators.base import EstimatorOutput, call_loss, register
from gumbench.estimators.fsq import LevelGrid, parse_levels
from gumbench.kernels.reference import compute_dtype
from gumbench.plugin import Range

UNIFORM_SCALE = math.sqrt(12.0)  # 1 / the standard deviation of U(0, 1)

# the CDF F: R -> [0, 1] and its inverse, by name
CDFS = {
    "tanh": (lambda z: (torch.tanh(z) + 1) / 2, lambda p: torch.atanh(2 * p - 1)),
    "sigmoid": (torch.sigmoid, torch.logit),
    "normal": (lambda z: (1 + torch.erf(z / math.sqrt(2))) / 2, lambda p: torch.erfinv(2 * p - 1) * math.sqrt(2)),
    "laplace": (lambda z: 0.5 * (1 + torch.sign(z) * (1 - torch.exp(-z.abs()))),
                lambda p: -torch.sign(p - 0.5) * torch.log(1 - 2 * (p - 0.5).abs())),
    "cauchy": (lambda z: torch.atan(z) / math.pi + 0.5, lambda p: torch.tan((p - 0.5) * math.pi)),
}


@register
class FSP(LevelGrid):
    name = "fsp"
    description = ("Finite scalar perturbation: each dimension through a CDF into equiprobable bins with Lloyd-Max "
                   "centres (straight-through); in training a perturbation within half a bin w.p. 1 - rate.")
    defaults = {"levels": "8-5-5-5", "act": "tanh", "rate": 0.0, "inverse": False}
    choices = {"act": tuple(CDFS)}
    ranges = {"rate": Range(0, 1, meaning="probability that a training value is quantized rather than perturbed")}
    first_digit_least = True

    def validate(self) -> None:
        self.levels = parse_levels(self.name, self.params["levels"], low=2)
        self.codes = math.prod(self.levels)


    def _digits(self, cdf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(digits j, bin centres q) of CDF values a, both (..., G, D) in a's dtype."""
        levels = torch.tensor(self.levels, dtype=cdf.dtype, device=cdf.device)
        digits = torch.floor(cdf.clamp_max(1 - torch.finfo(cdf.dtype).eps) * levels)
        return digits, (digits + 0.5) / levels

    def _indices(self, vectors: torch.Tensor) -> torch.Tensor:
        digits, _ = self._digits(CDFS[self.params["act"]][0](vectors.to(compute_dtype(vectors.dtype))))
        return self._digits_to_index(digits)

    def _digits_to_index(self, digits: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor(self.levels, dtype=torch.int64, device=digits.device)
        basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        return (digits.to(torch.int64) * basis).sum(-1)

    def _to_value(self, centre: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """The value of bin-space points ``centre``: standardized, or through F^{-1} (straight through to z if
        given)."""
        if not self.params["inverse"]:
            return (centre - 0.5) * UNIFORM_SCALE
        eps = torch.finfo(centre.dtype).eps
        inverse = CDFS[self.params["act"]][1](centre.detach().clamp(eps, 1 - eps))
        return inverse if z is None else z + (inverse - z).detach()

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The implicit code vectors of ``indices``; the codebook is not read."""
        return self.codes_of(indices, codebook.dtype)

    def codes_of(self, indices: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The code vectors (..., G, D) of code indices (..., G): the values of the bin centres."""
        digits = self.index_digits(indices).to(dtype)
        levels = torch.tensor(self.levels, dtype=dtype, device=digits.device)
        return self._to_value((digits + 0.5) / levels, None)

    def forward(self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None,
                generator=None) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        self.check(inputs, codebook)
        z = inputs.to(compute_dtype(inputs.dtype))  # fp16/bf16: in fp32
        cdf = CDFS[self.params["act"]][0](z)
        digits, centre = self._digits(cdf.detach())
        point = cdf + (centre - cdf).detach()
        if self.training and self.params["rate"] < 1:
            point = self._perturb(cdf, point, generator)
        value = self._to_value(point, z).to(inputs.dtype)
        loss = call_loss(loss_fn, value, inputs.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=self._digits_to_index(digits), loss=loss, aux={})

    def _perturb(self, cdf: torch.Tensor, point: torch.Tensor, generator) -> torch.Tensor:
        """With probability 1 - rate per element, a + u, u ~ U(-1/(2L), 1/(2L)), where it stays inside (0, 1)."""
        levels = torch.tensor(self.levels, dtype=cdf.dtype, device=cdf.device)
        uniform = torch.rand(cdf.shape, generator=generator, dtype=cdf.dtype, device=cdf.device)
        shift = (1 / (levels * 2)) * (uniform * 2 - 1)
        proposal = cdf + shift
        moved = torch.where((proposal > 0) & (proposal < 1), proposal, cdf)
        perturbed = torch.rand(cdf.shape, generator=generator, dtype=cdf.dtype, device=cdf.device) > self.params["rate"]
        return torch.where(perturbed, moved, point)
