"""VQBridge, the projector of FVQ (Chang, Qin, Qiao, Wang, Zhu, Ma and Wang 2025, "Scalable Training for
Vector-Quantized Networks with 100% Codebook Utilization"): the codes are looked up in a learned function of
the whole codebook, so every code moves with every gradient step (dense codebook gradients) and codes can
interact; nearest-code VQ with straight-through and the VQ-VAE losses around it.

Compress, process, recover, per book E (K, D) (per group, the projector shared by the groups):

    tokens    T = E grouped ``patch`` codes at a time: (K / patch, patch D)
    compress  H_0 = T A^T + a                       (A: (width, patch D))
    process   H_l = TransformerEncoderLayer_l(H_{l-1}), l = 1..depth   (pre-norm, ``heads`` heads, no dropout,
              feed-forward 4 width, no positional code: the codes are a set, order matters only within a patch)
    recover   E' = E + ungroup(H_depth B^T + b)     (B: (patch D, width), zero at the start)
    k = argmin_j ||z_e - E'_j||,  e = E'_k
    value     z_e + sg[e - z_e]                     (``rotation=true``: the rotation trick of vq-commitment)
    losses    ||sg[z_e] - e||^2 (trains E and the projector) + beta ||z_e - sg[e]||^2, averaged over G x D

B and b start at zero, so E' = E on the first call: the estimator starts as ``vq-commitment`` on the given
codebook and departs from it as the projector learns. The projector's parameters are this estimator's own
(``parameters()``, so they are in the training task's ``model`` group): A, a, B, b are made on the first call
(when D and the compute dtype are known; later calls must have the same D) as ``UninitializedParameter``
materialized in place, so an optimizer built before the first call holds them; on that call every projector
weight is drawn from the call's generator (matrices N(0, 1/fan_in), biases 0, layer norms 1 and 0), so a run
is reproducible from its seed. The codebook's K must be a multiple of ``patch``.

FVQ pairs VQBridge with learning-rate annealing (a learning rate decayed over training, under which plain VQ
loses codes); gumbench's training tasks run a constant learning rate, so the annealing is not part of this
estimator. vector-quantize-pytorch (1.34.1) has no projector of its own, only the hook ``vq_bridge`` (any
module applied to the codebook before the lookup, with ``learnable_codebook=True``); the oracle test hands it
this projector: values, indices and input gradients agree, and as for vq-commitment its loss
beta ||z_e - e||^2 has no stop-gradient, so its codebook and projector gradients are beta times these.
"""

from __future__ import annotations

import math

import torch
from torch.nn.parameter import UninitializedParameter

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, VQEstimator, register
from gumbench.estimators.vq import check_shapes, check_sizes, nearest_code_output, nearest_codes
from gumbench.kernels.reference import compute_dtype
from gumbench.plugin import Range

PROJECTOR = ("compress_weight", "compress_bias", "recover_weight", "recover_bias")


@register
class VQBridge(VQEstimator):
    name = "vqbridge"
    description = ("VQBridge (FVQ): codes looked up in E + a transformer projector of the whole codebook (dense "
                   "codebook gradients); straight-through, codebook loss (trains E and projector) + beta * commitment.")
    defaults = {"beta": 0.25, "width": 64, "depth": 1, "heads": 4, "patch": 1, "rotation": False}
    ranges = {"beta": Range(0, 100, meaning="commitment weight"), "width": Range(1, 1024, meaning="projector width"),
              "depth": Range(1, 8, meaning="transformer layers"), "heads": Range(1, 64, meaning="attention heads"),
              "patch": Range(1, 64, meaning="codes per token")}

    def validate(self) -> None:
        width, heads = self.params["width"], self.params["heads"]
        if width % heads:
            raise GumbenchError(f"{self.name}: width must be a multiple of heads, got width={width}, heads={heads}")
        self.layers = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(self.params["depth"]))
        for name in PROJECTOR:
            setattr(self, name, UninitializedParameter())

    def _build(self, dim: int, work: torch.dtype, device: torch.device, generator) -> None:
        """Make A, a, B, b for vectors of ``dim`` and draw every projector weight (first call only)."""
        if not isinstance(self.compress_weight, UninitializedParameter):
            if self.recover_bias.shape[0] != self.params["patch"] * dim:
                made = self.recover_bias.shape[0] // self.params["patch"]
                raise GumbenchError(f"{self.label}: its projector was made for vectors of D = {made} on the first "
                                    f"call; got D = {dim} (use a fresh estimator for another size)")
            return
        width, flat = self.params["width"], self.params["patch"] * dim
        shapes = {"compress_weight": (width, flat), "compress_bias": (width,), "recover_weight": (flat, width),
                  "recover_bias": (flat,)}
        for name, shape in shapes.items():
            getattr(self, name).materialize(shape, device=device, dtype=work)
        self.layers.to(device=device, dtype=work)
        with torch.no_grad():
            projector = [(name, p) for name, p in self.named_parameters() if name.startswith(("layers.", *PROJECTOR))]
            for name, param in projector:
                if name.startswith("recover") or (param.dim() == 1 and "norm" not in name):
                    param.zero_()
                elif param.dim() == 1:
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    drawn = torch.randn(param.shape, generator=generator, dtype=work, device=device)
                    param.copy_(drawn / math.sqrt(param.shape[1]))

    def bridged(self, books: torch.Tensor) -> torch.Tensor:
        """E + the projector's correction, for books (B, K, D) in the projector's dtype."""
        count, dim = books.shape[-2:]
        patch = self.params["patch"]
        if count % patch:
            raise GumbenchError(f"{self.label}: the codebook's {count} codes must be a multiple of patch={patch}")
        tokens = books.reshape(books.shape[0], count // patch, patch * dim)
        hidden = tokens @ self.compress_weight.T + self.compress_bias
        for layer in self.layers:
            hidden = layer(hidden)
        return books + (hidden @ self.recover_weight.T + self.recover_bias).reshape(books.shape)

    def effective_codebook(self, codebook: torch.Tensor, groups: int, generator=None) -> torch.Tensor:
        """E' (G, K, D) in the compute dtype, differentiable in E and the projector; (K, D) books are shared."""
        work = compute_dtype(codebook.dtype)
        self._build(codebook.shape[-1], work, codebook.device, generator)
        books = codebook.to(work) if codebook.dim() == 3 else codebook.to(work).unsqueeze(0)
        out = self.bridged(books)
        return out if codebook.dim() == 3 else out.expand(groups, *out.shape[1:])

    def _made(self) -> None:
        if isinstance(self.compress_weight, UninitializedParameter):
            raise GumbenchError(f"{self.label}: the projector is made on the first forward call; call the estimator on "
                                "vectors before assign_codes or decode")

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Nearest code of the effective codebook E' (by L2) for each vector (..., G, D)."""
        self._made()
        with torch.no_grad():
            book = self.effective_codebook(codebook, vectors.shape[-2])
            return nearest_codes(vectors.detach().to(book.dtype), book)

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Rows of the effective codebook E'."""
        self._made()
        return super().decode(indices, self.effective_codebook(codebook, indices.shape[-1]))

    def forward(self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None,
                generator=None) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        who, beta = self.label, self.params["beta"]
        check_shapes(who, inputs, codebook)
        check_sizes(who, inputs, codebook, beta)
        book = self.effective_codebook(codebook, inputs.shape[-2], generator)
        check_sizes(who, inputs, book, beta, name="effective codebook E'")
        return nearest_code_output(self, inputs, inputs.to(book.dtype), book, loss_fn, beta, self.params["rotation"])
