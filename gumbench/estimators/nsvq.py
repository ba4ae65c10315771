"""Noise substitution in vector quantization, NSVQ (Vali and Backstrom 2022, "NSVQ: Noise Substitution in
Vector Quantization for Machine Learning", IEEE Access): in training the quantization error is replaced
by a random vector of the same length, so the value is a differentiable function of z and of the
chosen code, and no straight-through estimator is needed.

Per group, with e the nearest code (L2) of vector z:

    training   value = z + ||z - e|| v / ||v||,   v ~ N(0, I_D) drawn from ``generator``
    eval       value = e                           (the codebook row itself)

so |value - z| = |z - e| exactly, and the direction of the substituted error is uniform on the sphere.
Gradients: d value / d z = I + (v/||v||) (z - e)^T / ||z - e||; the codebook gets a gradient at the
chosen code only, d value / d e = -(v/||v||) (z - e)^T / ||z - e|| (at z = e the norm's gradient is 0).
There are no auxiliary losses (the paper trains the codebook through this path alone; its codebook
replacement of unused codes is not included). vector-quantize-pytorch has no NSVQ: the tests check
these formulas directly.

Checks: as ``vq-commitment`` with beta = 0 (shapes, dtype and device, finite, max |z| + max |code| within
``magnitude_limit(dtype, G * D, 0)``), and max |z| + sqrt(D) (max |z| + max |code|), a bound on any value
entry, within half the dtype's largest value.
"""

from __future__ import annotations

import math

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, VQEstimator, call_loss, one_hot, register
from gumbench.estimators.vq import check_shapes, check_sizes, nearest_codes
from gumbench.kernels.reference import compute_dtype


@register
class NoiseSubstitution(VQEstimator):
    name = "nsvq"
    description = (
        "NSVQ: in training value = z + ||z - e|| v/||v||, v ~ N(0, I) (gradients reach z and the chosen code "
        "without straight-through); the nearest code e in eval."
    )

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The nearest code (L2) for each vector (..., G, D)."""
        codes = codebook.unsqueeze(0).expand(vectors.shape[-2], *codebook.shape) if codebook.dim() == 2 else codebook
        work = compute_dtype(vectors.dtype)
        return nearest_codes(vectors.detach().to(work), codes.detach().to(work))

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        who = self.label
        codes = check_shapes(who, inputs, codebook)
        largest_z, largest_code = check_sizes(who, inputs, codebook, 0.0)
        dim = inputs.shape[-1]
        bound, ceiling = largest_z + math.sqrt(dim) * (largest_z + largest_code), torch.finfo(inputs.dtype).max / 2
        if bound > ceiling:
            dtype = str(inputs.dtype).removeprefix("torch.")
            raise GumbenchError(
                f"{who}: max |input| + sqrt(D) (max |input| + max |code|) must be at most {ceiling:.3g} for {dtype} "
                f"(the value z + ||z - e|| v/||v|| must fit), got {bound:.3g} with D = {dim}"
            )
        work = compute_dtype(inputs.dtype)
        z, codes = inputs.to(work), codes.to(work)
        indices = nearest_codes(z.detach(), codes.detach())
        e = torch.einsum("...gk,gkd->...gd", one_hot(indices, codes.shape[1], work), codes)
        if self.training:
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=work)
            direction = noise / torch.linalg.vector_norm(noise, dim=-1, keepdim=True).clamp_min(torch.finfo(work).tiny)
            value = z + torch.linalg.vector_norm(z - e, dim=-1, keepdim=True) * direction
        else:
            value = e
        value = value.to(inputs.dtype)
        loss = call_loss(loss_fn, value, z.shape[:-2], self.spec)
        return EstimatorOutput(surrogate=loss, value=value, indices=indices, loss=loss, aux={})
