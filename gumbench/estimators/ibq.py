"""Index backpropagation quantization, IBQ (Shi, Luo, Ge, Yang, Shan and Wang 2024, "Taming Scalable
Visual Tokenizer for Autoregressive Image Generation" / "Scalable Image Tokenization with Index
Backpropagation Quantization"): straight-through on the soft categorical distribution over all codes,
so every code, not only the chosen one, gets a gradient.

Per group, with codebook C (K, D) and vector z:

    logits = z C^T,   p = softmax(logits),   k = argmax(logits),   h = onehot(k)
    value  z_q = (h - sg[p] + p) C                        (forward: the code e = C_k)
    commitment loss          ||z_q - z||^2                 (no stop-gradient: reaches z, and all codes through p)
    double quantization loss ||sg[e] - z||^2 + beta ||e - sg[z]||^2     (beta = 0.25)

each averaged over the G x D elements of a row, as in the authors' released quantizer (SEED-Voken,
``IndexPropagationQuantize``: "commit_loss" and "double_quant_loss"). The code is chosen by the largest
inner product (not the smallest distance; ``assign_codes`` does the same). The gradient reaches z only
through the logits (index backpropagation): d z_q / d z = C^T J(p) C with J(p) = diag(p) - p p^T, plus the
losses' direct terms. The value and losses are the same in train and eval mode (the method is
deterministic).

Not included: the optional entropy penalty of the released code (per-sample entropy of
softmax(logits / 0.01) minus the entropy of its batch average) — its second term is a statistic of
the whole batch, which would mix rows, and per-row surrogates are this suite's contract; and its
optional cosine/l2-normalized codebook. vector-quantize-pytorch has no IBQ: the tests check these
formulas directly (values, the gradient of every code row, the relation to a hand computation).

Checks: as ``vq-commitment`` (shapes, dtype and device, finite, max |z| + max |code| within
``magnitude_limit(dtype, G * D, beta)``), and, because the softmax path multiplies the upstream gradient
by about D |z| |e|, 2 D s^2 (1 + 2 s) <= a quarter of the dtype's largest value, s = max |z| + max |code|,
so the gradients that land in fp16/bf16 stay finite.
"""

from __future__ import annotations

import torch

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, VQEstimator, call_loss, one_hot, register
from gumbench.estimators.vq import check_shapes, check_sizes
from gumbench.kernels.reference import compute_dtype
from gumbench.plugin import Range


def softmax_path_limit(dtype: torch.dtype, dim: int) -> float:
    """The largest s = max |z| + max |code| for which 2 D s^2 (1 + 2 s) stays below a quarter of dtype's largest
    value."""
    ceiling = torch.finfo(dtype).max / 4
    low, high = 0.0, ceiling ** (1 / 3) + 1.0
    for _ in range(200):  # bisection on an increasing function
        mid = (low + high) / 2
        low, high = (mid, high) if 2 * dim * mid * mid * (1 + 2 * mid) <= ceiling else (low, mid)
    return low


@register
class IndexBackpropagation(VQEstimator):
    name = "ibq"
    description = ("IBQ: code of the largest z.C, value (onehot - sg[softmax] + softmax) C so every code gets a "
                   "gradient; commitment ||z_q - z||^2 + double quantization loss.")
    defaults = {"beta": 0.25}
    ranges = {"beta": Range(0, 100, meaning="weight of ||e - sg[z]||^2 in the double quantization loss")}

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The code with the largest inner product z . C_k for each vector (..., G, D)."""
        codes = codebook.unsqueeze(0).expand(vectors.shape[-2], *codebook.shape) if codebook.dim() == 2 else codebook
        work = compute_dtype(vectors.dtype)
        return torch.einsum("...gd,gkd->...gk", vectors.detach().to(work), codes.detach().to(work)).argmax(-1)

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        who, beta = self.label, self.params["beta"]
        codes = check_shapes(who, inputs, codebook)
        size = sum(check_sizes(who, inputs, codebook, beta))
        dim = inputs.shape[-1]
        limit = softmax_path_limit(inputs.dtype, dim)
        if size > limit:
            dtype = str(inputs.dtype).removeprefix("torch.")
            raise GumbenchError(
                f"{who}: max |input| + max |code| must be at most {limit:.3g} for {dtype} with D = {dim} "
                f"(the softmax path's gradient grows like D |z| |e|), got {size:.3g}"
            )
        work = compute_dtype(inputs.dtype)
        z, codes = inputs.to(work), codes.to(work)
        logits = torch.einsum("...gd,gkd->...gk", z, codes)
        probs = torch.softmax(logits, dim=-1)
        indices = logits.detach().argmax(dim=-1)
        hard = one_hot(indices, codes.shape[1], work)
        z_q = torch.einsum("...gk,gkd->...gd", hard - probs.detach() + probs, codes)
        e = torch.einsum("...gk,gkd->...gd", hard, codes)
        value = z_q.to(inputs.dtype)
        loss = call_loss(loss_fn, value, z.shape[:-2], self.spec)
        aux = {
            "commitment": (z_q - z).pow(2).mean(dim=(-2, -1)),
            "double_quantization": (e.detach() - z).pow(2).mean(dim=(-2, -1))
            + beta * (e - z.detach()).pow(2).mean(dim=(-2, -1)),
        }
        return EstimatorOutput(surrogate=loss + sum(aux.values()), value=value, indices=indices, loss=loss, aux=aux)
