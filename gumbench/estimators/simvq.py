"""SimVQ (Zhu, Li, Zhang, Li and Chen 2024, "Addressing Representation Collapse in Vector Quantized
Models with One Linear Layer"): the codebook is a frozen random basis C passed through one learned
linear map W, so every code moves whenever W does.

    effective codebook   E = C W                      (per group: E_g = C_g W, W shared by the groups)
    k = argmin_j ||z_e - E_j||,   e = E_k
    value                z_e + sg[e - z_e]            (straight-through; ``rotation=true``: the rotation
                                                       trick of ``vq-commitment``, sg[lambda R] z_e)
    codebook loss        ||sg[z_e] - e||^2            (trains W only: C is frozen)
    commitment loss      beta ||z_e - sg[e]||^2       (beta = 0.25)

each averaged over the G x D elements of a row. The bottleneck's codebook parameter serves as C: it is
used detached, so it never gets a gradient (training leaves it at its random initialization). W is a
trainable ``torch.nn.Parameter`` of shape (D, D) owned by this estimator module, created on the first
call (D is the vectors' size) in the compute dtype (fp32; fp64 for fp64 vectors) as the identity, so
training starts from the random codebook C itself and runs are deterministic without drawing random
numbers (vector-quantize-pytorch's ``Linear`` starts from U(-1/sqrt(D), 1/sqrt(D))); later calls must
have the same D. Because the estimator sits inside the model (``DiscreteBottleneck.estimator``), W is one of
``model.parameters()``, in the task's ``model`` parameter group, and a fresh estimator per training
run starts a fresh W. (The parameter is created lazily as ``UninitializedParameter`` and materialized in
place, so an optimizer built before the first call holds it.)

Versus vector-quantize-pytorch's ``SimVQ`` (``rotation_trick=False`` or ``True``,
``input_to_quantize_commit_loss_weight = beta``, ``commitment_weight = 1``): the same value, indices and
gradients; its ``code_transform`` is ``Linear(D, D)`` computing C weight^T, so W = weight^T; it returns
one loss, the batch mean of codebook + commitment, where this estimator keeps them per row and apart.
Its default is the rotation trick; the paper's (and this estimator's default) is straight-through.

Checks: as ``vq-commitment`` on the inputs and C (named "frozen codebook C"), then again on the
effective codebook C W (named "effective codebook C W"): finite, and max |z_e| + max |code| within
``magnitude_limit(dtype, G * D, beta)``.
"""

from __future__ import annotations

import torch
from torch.nn.parameter import UninitializedParameter

from gumbench.errors import GumbenchError
from gumbench.estimators.base import EstimatorOutput, VQEstimator, register
from gumbench.estimators.vq import check_shapes, check_sizes, nearest_code_output, nearest_codes
from gumbench.kernels.reference import compute_dtype
from gumbench.plugin import Range


@register
class SimVQ(VQEstimator):
    name = "simvq"
    description = ("SimVQ: frozen random codebook C through a learned linear map W (an estimator parameter); "
                   "nearest code of C W, straight-through, codebook loss (trains W) + beta * commitment.")
    defaults = {"beta": 0.25, "rotation": False}
    codebook_gradient = False  # C is frozen; W learns
    ranges = {"beta": Range(0, 100, meaning="commitment weight")}

    def validate(self) -> None:
        self.weight = UninitializedParameter()  # W (D, D): created on the first call, when D is known

    def _weight(self, dim: int, work: torch.dtype, device: torch.device) -> torch.Tensor:
        """W in the compute dtype on the vectors' device, made on the first call."""
        if isinstance(self.weight, UninitializedParameter):
            self.weight.materialize((dim, dim), device=device, dtype=work)
            with torch.no_grad():
                self.weight.copy_(torch.eye(dim, device=device, dtype=work))
        elif self.weight.shape != (dim, dim):
            raise GumbenchError(
                f"{self.label}: its linear map W was made for vectors of D = {self.weight.shape[0]} on the "
                f"first call; got D = {dim} (use a fresh estimator for another size)"
            )
        return self.weight.to(device=device, dtype=work)

    def effective_codebook(self, codebook: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        """C W in the compute dtype, (G, K, D) or (K, D) as given; C detached."""
        work = compute_dtype(codebook.dtype)
        if isinstance(self.weight, UninitializedParameter) and dim is None:
            raise GumbenchError(f"{self.label}: the linear map W is made on the first forward call; call the estimator "
                                "on vectors before assign_codes")
        weight = self._weight(codebook.shape[-1] if dim is None else dim, work, codebook.device)
        return codebook.detach().to(work) @ weight

    def decode(self, indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Rows of the effective codebook C W."""
        return super().decode(indices, self.effective_codebook(codebook))

    def assign_codes(self, vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Nearest code of the effective codebook C W (by L2) for each vector (..., G, D)."""
        with torch.no_grad():
            book = self.effective_codebook(codebook)
            book = book.unsqueeze(0).expand(vectors.shape[-2], *book.shape) if book.dim() == 2 else book
            return nearest_codes(vectors.detach().to(book.dtype), book)

    def forward(
        self, inputs: torch.Tensor, loss_fn, *, codebook: torch.Tensor | None = None, generator=None
    ) -> EstimatorOutput:
        codebook = self.codebook if codebook is None else codebook  # None: the estimator's own (own_codebook)
        who, beta = self.label, self.params["beta"]
        frozen = check_shapes(who, inputs, codebook)
        check_sizes(who, inputs, codebook, beta, name="frozen codebook C")
        work = compute_dtype(inputs.dtype)
        book = self.effective_codebook(frozen, inputs.shape[-1])  # (G, K, D), gradient to W only
        check_sizes(who, inputs, book, beta, name="effective codebook C W")
        return nearest_code_output(self, inputs, inputs.to(work), book, loss_fn, beta, self.params["rotation"])
