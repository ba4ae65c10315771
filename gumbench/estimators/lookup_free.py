"""Binary implicit codebooks: lookup-free quantization (LFQ) and binary spherical quantization (BSQ).

Both quantize each of the D dimensions of a vector (..., G, D) to one bit, so the codes are the
2^D corners of a cube (LFQ) or of the cube inscribed in the unit sphere (BSQ), and add an entropy
penalty that makes each vector's code confident and the batch use many codes. The code index
reads the bits with the first dimension as the most significant one, bit 1 for a positive entry
(an entry of exactly 0 counts as negative): index = sum_d 1[z_d > 0] 2^(D - 1 - d), as in
vector-quantize-pytorch and the BSQ reference code.

The entropy penalty of one group, over the N rows of a batch, is

    entropy = entropy_weight * (H_i - diversity_gamma * H_batch)

with H_i the entropy of row i's soft code distribution (averaged over the G groups) and H_batch the
entropy of the batch-averaged distribution (averaged over the groups). H_batch couples the rows:
it is the same number in every row's ``aux['entropy']``, so ``surrogate.mean()`` (the training
step) carries exactly the penalty above, while ``surrogate.sum()`` carries N times its batch term
and the gradient at one row depends on the others (the only place where rows mix).

LFQ (Yu et al. 2023, "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation",
MAGVIT-v2): value sign(z) in {-1, +1}^D with a straight-through gradient (identity at z); the soft
distribution over the 2^D codes c is p(c | z) = softmax_c(2 inv_temperature z.c) (a softmax of
minus the squared distance over a temperature, the constant |z|^2 + |c|^2 dropped), and the
entropies use log(max(p, 1e-5)) (vector-quantize-pytorch's convention); commitment =
commitment * mean_d (z_d - sign(z_d))^2.

BSQ (Zhao, Xiong and Kraehenbuehl 2024, "Image and Video Tokenization with Binary Spherical
Quantization"): u = z / |z| (per group), value sign(u)/sqrt(D) with a straight-through gradient at
u (identity at u, then through the normalization to z); the soft distribution of bit d is
p_d = sigmoid(4 inv_temperature u_d / sqrt(D)) for +1/sqrt(D) (the per-dimension factor of
softmax_c(2 inv_temperature u.c) over the sphere's corners, which factorizes exactly). H_i is the
exact entropy of that product distribution, sum_d H_b(p_d); H_batch is the paper's factorized
approximation sum_d H_b(mean_i p_d), an upper bound on the entropy of the averaged joint
distribution (equal for D = 1). Binary entropies are computed from the logits without a clamp,
the batch one with log(max(p, smallest normal)). commitment = commitment * mean_d (u_d - q_d)^2.

Both compute fp16 and bf16 in fp32 (the value is cast back; the auxiliary losses stay fp32), never
read the codebook's values (its shape must be (G, 2^D, D) or (2^D, D)) and take D <= 16. The
soft distribution of LFQ holds N x G x 2^D probabilities, at most ``gumbench.plugin.MAX_ELEMENTS``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, call_loss, register
from gumbench.estimators.implicit import ImplicitCodebookVQ
from gumbench.estimators.vq import magnitude_limit, normalize, shortest
from gumbench.kernels.reference import compute_dtype
from gumbench.plugin import MAX_ELEMENTS, Range

MAX_BITS = 16  # 65,536 codes: the training tasks' largest codebook
LOG_FLOOR = 1e-5  # vector-quantize-pytorch's clamp of p inside log p (LFQ)
WEIGHT = Range(0, 100)


def bits_to_index(positive: torch.Tensor) -> torch.Tensor:
    """Code index (...) of bits (..., D), the first one most significant."""
    dim = positive.shape[-1]
    basis = 2 ** torch.arange(dim - 1, -1, -1, device=positive.device, dtype=torch.int64)
    return (positive.to(torch.int64) * basis).sum(-1)


def corners(dim: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The 2^D codes in {-1, +1}^D (2^D, D), row k the code of index k."""
    basis = 2 ** torch.arange(dim - 1, -1, -1, device=device, dtype=torch.int64)
    bits = (torch.arange(2**dim, device=device).unsqueeze(-1) // basis) % 2
    return (2 * bits - 1).to(dtype)


def clamped_entropy(p: torch.Tensor, floor: float) -> torch.Tensor:
    """-sum p log(max(p, floor)) over the last dimension."""
    return -(p * p.clamp_min(floor).log()).sum(-1)


def binary_entropy_of_logits(a: torch.Tensor) -> torch.Tensor:
    """H_b(sigmoid(a)) = softplus(a) - a sigmoid(a), exact and finite for any finite a."""
    return torch.nn.functional.softplus(a) - a * torch.sigmoid(a)


class _BinaryQuantizer(ImplicitCodebookVQ):
    first_digit_least = False
    # the code dimension D where a training task sets neither codes nor code dimension: 2^10 = 1,024 codes,
    # about FSQ's default 8-5-5-5 (1,000)
    default_code_dim: ClassVar[int] = 10
    ranges = {"entropy_weight": WEIGHT, "commitment": WEIGHT, "diversity_gamma": WEIGHT,
              "inv_temperature": Range(1e-3, 1e4, meaning="softmax sharpness 1/temperature")}
    on_sphere = False  # codes sign(z) (LFQ) or sign(z)/sqrt(D) (BSQ)

    def validate(self) -> None:
        self.code_dim: int | None = None  # D of the last vectors checked: what levels and index_digits default to

    def check(self, inputs, codebook) -> None:
        super().check(inputs, codebook)
        self.code_dim = int(inputs.shape[-1])

    @property
    def levels(self) -> tuple[int, ...]:
        """(2,) * D, with D the code dimension of the last vectors this estimator quantized."""
        return self.digit_levels()

    def code_shape(self, dim: int) -> tuple[int, int]:
        return 2**dim, dim

    def code_space(self, codes: int | None = None, code_dim: int | None = None) -> tuple[int, int] | None:
        """2^D codes of dimension D: D = ``code_dim`` if given, else log2(``codes``) if given, else
        ``default_code_dim``; None where no D in [1, 16] agrees with what is given."""
        if code_dim is None:
            code_dim = self.default_code_dim if codes is None else max(codes, 1).bit_length() - 1
        if not 1 <= code_dim <= MAX_BITS or codes not in (None, 2**code_dim):
            return None
        return 2**code_dim, code_dim

    def dimension_problem(self, dim: int) -> str | None:
        if dim > MAX_BITS:
            return f"one bit per dimension allows at most D = {MAX_BITS} (65,536 codes), got D = {dim}"
        return None

    def digit_levels(self, dim: int | None = None) -> tuple[int, ...]:
        """(2,) * D for codes of dimension ``dim``; without it, the D of the last vectors quantized."""
        if dim is None:
            dim = self.code_dim
            if dim is None:
                raise GumbenchError(f"{self.label}: the code dimension D is known once vectors have been quantized; "
                                    f"pass dim=D (2^D codes) to index_digits or digit_levels")
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_BITS:
            raise GumbenchError(
                f"{self.label}: dim (the code dimension D, 2^D codes) must be an integer in [1, {MAX_BITS}], "
                f"got {dim!r}"
            )
        return (2,) * dim

    def _indices(self, vectors: torch.Tensor) -> torch.Tensor:
        return bits_to_index(vectors > 0)

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The implicit code vectors of ``indices`` (D from the codebook's shape; it is not read): +-1 per
        bit for LFQ, +-1/sqrt(D) for BSQ."""
        dim = codebook.shape[-1]
        signs = self.index_digits(indices, dim).to(codebook.dtype) * 2 - 1
        return signs / math.sqrt(dim) if self.on_sphere else signs

    def _entropy(self, per_sample: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """entropy_weight * (H_i - gamma * H_batch) per row, from per-row (...) and batch () entropies."""
        return self.params["entropy_weight"] * (per_sample - self.params["diversity_gamma"] * batch)


@register
class LFQ(_BinaryQuantizer):
    name = "lfq"
    description = ("Lookup-free quantization (MAGVIT-v2): sign of each dimension, straight-through; entropy penalty "
                   "(per-sample minus gamma x batch entropy over the 2^D codes) and commitment.")
    # entropy_weight 0.1 and diversity_gamma 1 are vector-quantize-pytorch's defaults (MAGVIT-v2 weighs its
    # entropy loss by 0.1 too); commitment 0.25 is MAGVIT-v2's (vector-quantize-pytorch defaults to 0);
    # inv_temperature 100 is vector-quantize-pytorch's default (MAGVIT-v2's temperature 0.01)
    defaults = {"entropy_weight": 0.1, "commitment": 0.25, "diversity_gamma": 1.0, "inv_temperature": 100.0}

    def magnitude_limit(self, dtype: torch.dtype, groups: int, dim: int) -> float:
        # the commitment loss is a mean of (z - q)^2 with |q| = 1: vq-commitment's bound with |e| = 1
        return magnitude_limit(dtype, groups * dim, max(self.params["commitment"], 1.0)) - 1.0

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        self.check(inputs, codebook)
        groups, dim = inputs.shape[-2:]
        probabilities = inputs.shape[:-2].numel() * groups * 2**dim
        if probabilities > MAX_ELEMENTS:
            raise GumbenchError(
                f"{self.label}: the entropy terms hold rows x G x 2^D = {probabilities:,} probabilities, "
                f"at most {MAX_ELEMENTS:,} (memory); use fewer rows or dimensions"
            )
        z = inputs.to(compute_dtype(inputs.dtype))  # fp16/bf16: in fp32
        positive = z > 0
        q = torch.where(positive, 1.0, -1.0).to(z.dtype)
        indices = bits_to_index(positive)
        value = (z + (q - z).detach()).to(inputs.dtype)
        loss = call_loss(loss_fn, value, inputs.shape[:-2], self.spec)
        logits = (
            2 * self.params["inv_temperature"] * torch.einsum("...gd,kd->...gk", z, corners(dim, z.dtype, z.device))
        )
        p = torch.softmax(logits, dim=-1)  # (..., G, K)
        per_sample = clamped_entropy(p, LOG_FLOOR).mean(-1)
        batch = clamped_entropy(p.reshape(-1, groups, 2**dim).mean(0), LOG_FLOOR).mean()
        aux = {"entropy": self._entropy(per_sample, batch),
               "commitment": self.params["commitment"] * (z - q).pow(2).mean(dim=(-2, -1))}
        surrogate = loss + sum(aux.values())
        return EstimatorOutput(surrogate=surrogate, value=value, indices=indices, loss=loss, aux=aux)


@register
class BSQ(_BinaryQuantizer):
    name = "bsq"
    on_sphere = True
    description = ("Binary spherical quantization: project to the unit sphere, sign(u)/sqrt(D) straight-through; "
                   "factorized entropy penalty and commitment.")
    # the BSQ reference configurations (bsq-vit, imagenet_256x256_bsqvit_*): inv_temperature 1, gamma 1,
    # commitment (beta) 0, the quantizer's loss weighed by 0.1 (codebook_weight, without its warm-up ramp)
    defaults = {"entropy_weight": 0.1, "commitment": 0.0, "diversity_gamma": 1.0, "inv_temperature": 1.0}

    def magnitude_limit(self, dtype: torch.dtype, groups: int, dim: int) -> float:
        # |z|^2 must stay finite in the compute dtype to normalize
        return math.sqrt(torch.finfo(compute_dtype(dtype)).max / (2 * dim))

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        self.check(inputs, codebook)
        groups, dim = inputs.shape[-2:]
        z = inputs.to(compute_dtype(inputs.dtype))  # fp16/bf16: in fp32
        # vectors shorter than shortest(dtype) are divided by it, keeping their gradients finite
        u = normalize(z, shortest(inputs.dtype))
        positive = z > 0
        q = torch.where(positive, 1.0, -1.0).to(z.dtype) / math.sqrt(dim)
        indices = bits_to_index(positive)
        value = (u + (q - u).detach()).to(inputs.dtype)
        loss = call_loss(loss_fn, value, inputs.shape[:-2], self.spec)
        a = 4 * self.params["inv_temperature"] * u / math.sqrt(dim)  # logit of bit d being +1
        per_sample = binary_entropy_of_logits(a).sum(-1).mean(-1)
        p_plus = torch.sigmoid(a).reshape(-1, groups, dim).mean(0)
        p_minus = torch.sigmoid(-a).reshape(-1, groups, dim).mean(0)
        tiny = torch.finfo(z.dtype).tiny
        batch = -(p_plus * p_plus.clamp_min(tiny).log() + p_minus * p_minus.clamp_min(tiny).log()).sum(-1).mean()
        aux = {"entropy": self._entropy(per_sample, batch),
               "commitment": self.params["commitment"] * (u - q).pow(2).mean(dim=(-2, -1))}
        surrogate = loss + sum(aux.values())
        return EstimatorOutput(surrogate=surrogate, value=value, indices=indices, loss=loss, aux=aux)
